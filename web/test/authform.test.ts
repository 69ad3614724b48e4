import { describe, expect, it } from "vitest";
import { ApiError } from "../src/api/client";
import { authProblems, checkRegistration } from "../src/text/authform";

const REGISTER = ["name", "email", "password"] as const;
const LOGIN = ["email", "password"] as const;

describe("authProblems", () => {
  it("puts a registration's 422 reasons under their fields in plain words, with no general sentence", () => {
    const err = new ApiError(422, "invalid", "invalid registration", null, {
      email: "not a valid email address",
      password: "at most 256 characters",
      name: "1 to 100 characters after trimming, no control characters or text-direction overrides",
    });
    expect(authProblems(err, REGISTER)).toEqual({
      fields: {
        email: "Enter a valid email address, like name@example.com.",
        password: "At most 256 characters.",
        name: "Use 1 to 100 characters, beginning and ending with one that shows; no invisible control or text-direction characters.",
      },
      general: null,
    });
  });

  it("words the other password reasons plainly", () => {
    const why = (reason: string) => authProblems(new ApiError(422, "invalid", "x", null, { password: reason }), LOGIN).fields.password;
    expect(why("at least 10 characters")).toBe("Use at least 10 characters.");
    expect(why("required")).toBe("Enter a password.");
    expect(why("must be valid Unicode text")).toBe("Remove the character that is not valid text.");
    expect(why("something new")).toBe("Something new.");
  });

  it("keeps a reason about a field the form does not show as a general message", () => {
    const err = new ApiError(422, "invalid", "invalid credentials format", null, { email: "required, a string", refresh_in: 'either "body" or "cookie"' });
    expect(authProblems(err, LOGIN)).toEqual({
      fields: { email: "Enter a valid email address, like name@example.com." },
      general: 'refresh in: either "body" or "cookie".',
    });
    // A name reason on the login form (which has no name field) is not lost either.
    expect(authProblems(new ApiError(422, "invalid", "x", null, { name: "required" }), LOGIN).general).toBe("Name: required.");
  });

  it("keeps the general message for a refusal about no field", () => {
    expect(authProblems(new ApiError(401, "unauthorized", "wrong email or password"), LOGIN)).toEqual({ fields: {}, general: "Wrong email or password." });
    expect(authProblems(new Error("worker gone"), LOGIN)).toEqual({ fields: {}, general: "worker gone" });
  });
});

describe("authProblems on the password change form", () => {
  it("says each password's problem under it, in words", () => {
    const err = new ApiError(422, "invalid", "invalid password change", null, { current_password: "required", new_password: "the same as the current password" });
    expect(authProblems(err, ["current_password", "new_password"])).toEqual({
      fields: { current_password: "Enter your current password.", new_password: "Choose a password other than your current one." },
      general: null,
    });
    const short = new ApiError(422, "invalid", "invalid password change", null, { new_password: "at least 10 characters" });
    expect(authProblems(short, ["current_password", "new_password"]).fields).toEqual({ new_password: "Use at least 10 characters." });
    expect(authProblems(new ApiError(403, "forbidden", "the current password is wrong"), ["current_password", "new_password"]).general).toBe(
      "The current password is wrong.",
    );
  });
});

describe("checkRegistration", () => {
  it("refuses a name of only spaces before anything is sent", () => {
    expect(checkRegistration("   ")).toEqual({ name: "Enter a name: spaces alone are not one." });
    expect(checkRegistration("Ada")).toEqual({});
  });
});
