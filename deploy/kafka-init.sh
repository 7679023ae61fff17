#!/usr/bin/env bash
# The one-shot init container of docker-compose.yml, run as the super user `admin`
# (PLAIN, on the broker's INTERNAL listener): creates the topics, the SCRAM-SHA-512 user
# of each part (its password read from the part's env_file, mounted as a secret) and the
# ACLs below. Nothing else may do anything: the broker runs with
# allow.everyone.if.no.acl.found=false. Safe to run again (every step is idempotent).
# No password is ever passed on a command line: they go through files in a private folder.
set -euo pipefail

BIN=/opt/kafka/bin
BOOTSTRAP=kafka:9094
ADMIN=/run/secrets/kafka-admin-client
TOPICS="snapshot.commands snapshot.events snapshot.commands.dlq"
PARTITIONS=${SNAPSHOT_TOPIC_PARTITIONS:-3}

for topic in $TOPICS; do
    "$BIN/kafka-topics.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN" \
        --create --if-not-exists --topic "$topic" --partitions "$PARTITIONS" --replication-factor 1
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# user NAME PART: the SCRAM credential of NAME, with the password of /run/secrets/PART-env
user() {
    (umask 077 && sed -n 's/^KAFKA_SASL_PASSWORD=/SCRAM-SHA-512=password=/p' "/run/secrets/$2-env" > "$work/scram")
    "$BIN/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN" \
        --alter --entity-type users --entity-name "$1" --add-config-file "$work/scram"
    rm -f "$work/scram"
}

# grant PRINCIPAL OPERATION topic|group NAME: one literal resource, never a wildcard
grant() {
    "$BIN/kafka-acls.sh" --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN" \
        --add --allow-principal "User:$1" --operation "$2" "--$3" "$4"
}

user snapshots-service service
user snapshots-projection projection
user snapshots-api api

# The service: consumes commands (and may issue its own), publishes events and dead letters.
grant snapshots-service Read topic snapshot.commands
grant snapshots-service Write topic snapshot.commands
grant snapshots-service Write topic snapshot.events
grant snapshots-service Write topic snapshot.commands.dlq
grant snapshots-service Read group dws-snapshots
# faust's leader-assignor topic of the service's app (created on first start)
grant snapshots-service Read topic dws-snapshots-__assignor-__leader
grant snapshots-service Create topic dws-snapshots-__assignor-__leader

# The projection: reads the events. It checks that the other topics exist at start-up
# (Describe: their names and partitions, nothing of their records).
grant snapshots-projection Read topic snapshot.events
grant snapshots-projection Describe topic snapshot.commands
grant snapshots-projection Describe topic snapshot.commands.dlq
grant snapshots-projection Read group dws-snapshots-projection
grant snapshots-projection Read topic dws-snapshots-projection-__assignor-__leader
grant snapshots-projection Create topic dws-snapshots-projection-__assignor-__leader

# The API: publishes the commands of authenticated HTTP callers, and nothing else.
grant snapshots-api Write topic snapshot.commands

echo "kafka-init: topics, users and ACLs are in place"
