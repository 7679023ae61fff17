#!/bin/sh
# Run once by docker-compose's `minio-init` (the minio/mc image): the bucket of the
# snapshot repository, and the service's own MinIO user, allowed that bucket only. The
# root password and the service's keys come from compose secrets (deploy/kafka-secrets.sh).
set -eu
mc alias set local http://minio:9000 minio-admin "$(cat /run/secrets/minio-root-password)" >/dev/null
mc mb --ignore-existing local/dws-snapshots
# The service's env_file: KEY=value lines (its Kafka, PostgreSQL and MinIO secrets).
. /run/secrets/service-env
cat > /tmp/dws-snapshots-policy.json <<POLICY
{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
   "Resource": ["arn:aws:s3:::dws-snapshots"]},
  {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                                 "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
   "Resource": ["arn:aws:s3:::dws-snapshots/*"]}]}
POLICY
# mc takes the secret key as an argument: it is seen only inside this short-lived container.
mc admin user add local "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null
mc admin policy create local dws-snapshots /tmp/dws-snapshots-policy.json
mc admin policy attach local dws-snapshots --user "$AWS_ACCESS_KEY_ID" || true  # already attached on a rerun
echo "minio-init: bucket dws-snapshots and user $AWS_ACCESS_KEY_ID ready"
