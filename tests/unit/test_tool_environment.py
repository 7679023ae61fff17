"""What of the service's environment pg_dump and pg_restore get to see."""

from services.snapshots.drivers.tools import tool_environment

SERVICE_ENVIRONMENT = {
    "PATH": "/usr/bin", "HOME": "/home/svc", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "LC_MESSAGES": "C",
    "PGPASSFILE": "/run/secrets/pgpass", "PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/etc/ca.pem",
    "PGPASSWORD": "the service's own", "SNAPSHOT_CLUSTER_PASSWORDS": '{"postgresql://x": "secret"}',
    "KAFKA_BOOTSTRAP_SERVERS": "broker:9092", "AWS_SECRET_ACCESS_KEY": "abc",
}


def test_the_tools_get_path_home_locale_pgpassfile_and_ssl_settings_and_nothing_else():
    assert tool_environment(None, SERVICE_ENVIRONMENT) == {
        "PATH": "/usr/bin", "HOME": "/home/svc", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "LC_MESSAGES": "C",
        "PGPASSFILE": "/run/secrets/pgpass", "PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/etc/ca.pem"}


def test_the_tools_get_the_password_configured_for_the_cluster_not_the_services_own():
    assert tool_environment("the cluster's", SERVICE_ENVIRONMENT)["PGPASSWORD"] == "the cluster's"
    assert "PGPASSWORD" not in tool_environment(None, SERVICE_ENVIRONMENT)
