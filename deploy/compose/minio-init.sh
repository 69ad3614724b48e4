#!/bin/sh
# compose's minio-init job (minio/mc image), idempotent: the private attachments bucket, and the
# services' own MinIO user that may only read, write and delete objects in that bucket. The root
# credentials stay in this job and in minio itself; the services get MINIO_APP_* only.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${MINIO_APP_ACCESS_KEY:?}"
: "${MINIO_APP_SECRET_KEY:?}" "${CHAT_S3_BUCKET:?}"
POLICY=chat-attachments-rw

mc alias set chat http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "chat/$CHAT_S3_BUCKET"
mc anonymous set none "chat/$CHAT_S3_BUCKET"

# Bucket level: HeadObject answers 404 (not 403) for a missing key only with ListBucket.
# Object level: presigned POST uploads, presigned GET downloads, the checks and the sweep.
# (printf is a shell builtin: the mc image has no sed.)
BUCKET_RULE='{"Effect":"Allow","Action":["s3:GetBucketLocation","s3:ListBucket"],"Resource":["arn:aws:s3:::%s"]}'
OBJECT_RULE='{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject"],"Resource":["arn:aws:s3:::%s/*"]}'
printf "{\"Version\":\"2012-10-17\",\"Statement\":[$BUCKET_RULE,$OBJECT_RULE]}\n" \
  "$CHAT_S3_BUCKET" "$CHAT_S3_BUCKET" >/tmp/chat-policy.json
mc admin policy create chat "$POLICY" /tmp/chat-policy.json
# Adding an existing user sets its secret: a changed MINIO_APP_SECRET_KEY takes effect.
mc admin user add chat "$MINIO_APP_ACCESS_KEY" "$MINIO_APP_SECRET_KEY"
# attach refuses a policy that is already attached: detach first so a rerun succeeds.
mc admin policy detach chat "$POLICY" --user "$MINIO_APP_ACCESS_KEY" >/dev/null 2>&1 || true
mc admin policy attach chat "$POLICY" --user "$MINIO_APP_ACCESS_KEY"
echo "bucket $CHAT_S3_BUCKET ready; user $MINIO_APP_ACCESS_KEY limited to it ($POLICY)"
