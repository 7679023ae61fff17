"""The published language of dws-snapshots: commands, events, the CloudEvents envelope,
the codec every producer and consumer uses, and the topic names (see SPEC.md)."""
