#!/usr/bin/env bash
# Writes the secrets that docker-compose.yml reads, each with a new random password, into
# DIR (default: secrets/ at the top of the repository). Run it once before
# `docker compose up`; it refuses to overwrite, because the broker, the init container
# and the parts must agree: delete the folder to start again (and the volumes with it).
#
#   kafka_server_jaas.conf   the broker's JAAS file: the super user `admin` (PLAIN)
#   kafka-admin.properties   client settings of `admin`, for the init container and healthcheck
#   postgres-password        the event store's PostgreSQL password
#   minio-root-password      MinIO's root password, for MinIO and its init container
#   service.env, projection.env, api.env
#                            each part's own KAFKA_SASL_PASSWORD (SCRAM-SHA-512), and the
#                            PostgreSQL password, as compose env_files; the service's
#                            also its MinIO keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)
set -euo pipefail

dir=${1:-"$(cd "$(dirname "$0")/.." && pwd)/secrets"}
if [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
    echo "kafka-secrets: $dir is not empty; delete it to make new secrets" >&2
    exit 1
fi
mkdir -p "$dir"
# The folder keeps them from other users of this machine. The files themselves are
# readable, because compose mounts each one into a container whose user (the Kafka
# image's appuser) is not the one who ran this script.
chmod 700 "$dir"
umask 022

random() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

admin=$(random)
postgres=$(random)

cat > "$dir/kafka_server_jaas.conf" <<JAAS
KafkaServer {
    org.apache.kafka.common.security.plain.PlainLoginModule required
    username="admin"
    password="$admin"
    user_admin="$admin";
};
clients.KafkaServer {
    org.apache.kafka.common.security.scram.ScramLoginModule required;
};
JAAS

cat > "$dir/kafka-admin.properties" <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$admin";
PROPERTIES

printf '%s' "$postgres" > "$dir/postgres-password"
printf '%s' "$(random)" > "$dir/minio-root-password"

for part in service projection api; do
    printf 'KAFKA_SASL_PASSWORD=%s\nSNAPSHOT_POSTGRES_PASSWORD=%s\n' "$(random)" "$postgres" > "$dir/$part.env"
done
printf 'AWS_ACCESS_KEY_ID=snapshots-service\nAWS_SECRET_ACCESS_KEY=%s\n' "$(random)" >> "$dir/service.env"
echo "kafka-secrets: wrote the secrets of docker-compose.yml to $dir"
