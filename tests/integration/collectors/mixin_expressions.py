"""Alert and dashboard expressions of the community mixins, as a user of each exporter runs them.

Taken from the mixins' own sources: oliver006/redis_exporter ``contrib/redis-mixin`` (alerts, dashboard)
and ``contrib/grafana_prometheus_redis_dashboard.json``; prometheus-community/postgres_exporter
``postgres_mixin`` (alerts, dashboard); prometheus/mysqld_exporter ``mysqld-mixin`` (alerts, rules,
dashboard); prometheus/node_exporter ``docs/node-mixin`` (alerts, rules); and the queries of the
blackbox_exporter dashboards. The mixins' default configuration is kept (``job="redis"``,
``job="node"``, ``datname!~"template.*"``, ``agg`` = job, instance, server); dashboard variables are
filled in the way a user picks them: ``$job`` the exporter's job, ``$instance`` all, ``$db``
``postgres``, ``$__rate_interval`` ``1m``.

An alert whose condition holds on neither side (a healthy server) says nothing about parity, so each
alert also appears as its value: the expression without its final comparison (marked ``value``).

``GAPS`` are the expressions whose families the sidecar does not emit, each with the reason the
README's catalogue gives; the parity test holds that list to the truth in both directions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Expr:
    """One expression; ``abs_tol``/``rel_tol`` bound how far the sidecar's value may be from the exporter's."""

    source: str
    expr: str
    abs_tol: float = 0.01
    rel_tol: float = 0.25


# Counts of connections or commands differ by the scrapers' own activity at their moment of reading.
COUNT = 3.0
# Rates over the seconds of the test: both sides read the same counters, a probe apart.
RATE_REL = 0.5
# The background writer reports its counters in rare steps: a step inside one side's window and
# just outside the other's moves the average by up to step / window.
BGWRITER = 5.0

REDIS = "redis-mixin"
PG = "postgres_mixin"
MYSQL = "mysqld-mixin"
NODE = "node-mixin"
BLACKBOX = "blackbox dashboards"

EXPRESSIONS: tuple[Expr, ...] = (
    # --- redis-mixin alerts (redisExporterSelector job="redis") ---------------------------------
    Expr(REDIS + " alert RedisDown", 'redis_up{job="redis"} == 0'),
    Expr(REDIS + " alert RedisDown value", 'redis_up{job="redis"}'),
    Expr(
        REDIS + " alert RedisOutOfMemory value",
        'redis_memory_used_bytes{job="redis"} / redis_total_system_memory_bytes{job="redis"} * 100',
        abs_tol=0.01,
    ),
    Expr(REDIS + " alert RedisTooManyConnections", 'redis_connected_clients{job="redis"} > 100'),
    Expr(
        REDIS + " alert RedisTooManyConnections value", 'redis_connected_clients{job="redis"}', abs_tol=COUNT
    ),
    Expr(REDIS + " alert RedisClusterSlotFail", 'redis_cluster_slots_fail{job="redis"} > 0'),
    Expr(REDIS + " alert RedisClusterStateNotOk", 'redis_cluster_state{job="redis"} == 0'),
    # --- redis dashboards -------------------------------------------------------------------------
    Expr(REDIS + " dashboard", 'sum(redis_connected_clients{instance=~".+"})', abs_tol=COUNT),
    Expr(REDIS + " dashboard", 'sum(redis_blocked_clients{instance=~".+"})'),
    Expr(REDIS + " dashboard", 'sum(redis_memory_used_bytes{instance=~".+"})', rel_tol=0.1),
    Expr(REDIS + " dashboard", 'sum(redis_memory_max_bytes{instance=~".+"})'),
    Expr(REDIS + " dashboard", 'sum(redis_memory_used_rss_bytes{instance=~".+"})', rel_tol=0.1),
    Expr(REDIS + " dashboard", 'sum(redis_connected_slaves{instance=~".+"}) by (instance)'),
    Expr(REDIS + " dashboard", 'sum(redis_db_keys_expiring{instance=~".+"})'),
    Expr(REDIS + " dashboard", 'sum (redis_db_keys{instance=~".+"}) by (db)'),
    Expr(
        REDIS + " dashboard",
        'sum (redis_db_keys{instance=~".+"}) - sum (redis_db_keys_expiring{instance=~".+"})',
    ),
    Expr(REDIS + " dashboard", 'irate(redis_evicted_keys_total{instance=~".+"}[1m])'),
    Expr(
        REDIS + " dashboard",
        'avg(irate(redis_keyspace_hits_total{instance=~".+"}[1m]) / (irate(redis_keyspace_misses_total'
        '{instance=~".+"}[1m]) + irate(redis_keyspace_hits_total{instance=~".+"}[1m]))) by (instance)',
    ),
    Expr(
        REDIS + " dashboard",
        'avg(irate(redis_commands_total{instance=~".+"} [1m])) by (cmd)',
        rel_tol=RATE_REL,
    ),
    Expr(
        REDIS + " dashboard",
        'avg(irate(redis_commands_duration_seconds_total{instance=~".+"}[1m])) by (cmd)\n/\n'
        'avg(irate(redis_commands_total{instance=~".+"}[1m])) by (cmd)',
        abs_tol=1e-4,
        rel_tol=1.0,
    ),
    Expr(REDIS + " dashboard", 'redis_memory_fragmentation_ratio{instance=~".+"}'),
    Expr(REDIS + " dashboard", 'redis_master_last_io_seconds_ago{instance=~".+"}'),
    Expr(REDIS + " dashboard", "max(max_over_time(redis_uptime_in_seconds[1m]))", abs_tol=COUNT),
    Expr(REDIS + " dashboard", "rate(redis_commands_processed_total[1m])", rel_tol=RATE_REL),
    Expr(REDIS + " dashboard", "sum(rate(redis_net_input_bytes_total[1m]))", rel_tol=RATE_REL),
    Expr(REDIS + " dashboard", "sum(rate(redis_net_output_bytes_total[1m]))", rel_tol=RATE_REL),
    Expr(REDIS + " dashboard", "sum(rate(redis_expired_keys_total[1m])) by (instance)"),
    # --- postgres_mixin alerts (agg = job, instance, server; dbNameFilter datname!~"template.*") ---
    Expr(PG + " alert PostgreSQLDown", "pg_up{} != 1"),
    Expr(PG + " alert PostgreSQLDown value", "pg_up{}"),
    Expr(
        PG + " alert PostgreSQLMaxConnectionsReached value",
        "sum by (job, instance, server) (pg_stat_activity_count{})",
        abs_tol=COUNT,
    ),
    Expr(
        PG + " alert PostgreSQLMaxConnectionsReached value",
        "sum by (job, instance, server) (pg_settings_max_connections{})\n-\n"
        "sum by (job, instance, server) (pg_settings_superuser_reserved_connections{})",
    ),
    Expr(
        PG + " alert PostgreSQLHighConnections",
        "sum by (job, instance, server) (pg_stat_activity_count{})\n>\n(\n"
        "sum by (job, instance, server) (pg_settings_max_connections{})\n-\n"
        "sum by (job, instance, server) (pg_settings_superuser_reserved_connections{})\n) * 0.8",
    ),
    Expr(
        PG + " alert PostgreSQLSlowQueries value",
        'avg by (datname, job, instance, server) (rate (pg_stat_activity_max_tx_duration{datname!~"template.*", }[2m]))',
        abs_tol=0.05,
    ),
    Expr(
        PG + " alert PostgreSQLQPS value",
        'avg by (datname, job, instance, server) (irate(pg_stat_database_xact_commit{datname!~"template.*", }[5m])'
        ' + irate(pg_stat_database_xact_rollback{datname!~"template.*", }[5m]))',
        rel_tol=RATE_REL,
    ),
    Expr(
        PG + " alert PostgreSQLCacheHitRatio value",
        'avg by (datname, job, instance, server) (rate(pg_stat_database_blks_hit{datname!~"template.*", }[5m]) /'
        ' (rate(pg_stat_database_blks_hit{datname!~"template.*", }[5m]) +'
        ' rate(pg_stat_database_blks_read{datname!~"template.*", }[5m])))',
        abs_tol=0.05,
    ),
    Expr(
        PG + " alert PostgresHasTooManyRollbacks value",
        'avg without(pod, instance) (rate(pg_stat_database_xact_rollback{datname!~"template.*"}[5m]) /'
        ' (rate(pg_stat_database_xact_commit{datname!~"template.*"}[5m]) +'
        ' rate(pg_stat_database_xact_rollback{datname!~"template.*"}[5m])))',
        abs_tol=0.05,
    ),
    Expr(
        PG + " alert PostgresHasHighDeadLocks value",
        'max without(pod, instance) (rate(pg_stat_database_deadlocks{datname!~"template.*"}[5m]) * 60)',
    ),
    Expr(
        PG + " alert PostgresAcquiredTooManyLocks value",
        'max by(datname, job,instance,server) ((pg_locks_count{datname!~"template.*"}) / on(job,instance)'
        " group_left(server) (pg_settings_max_locks_per_transaction{} * pg_settings_max_connections{}))",
        abs_tol=0.002,
    ),
    Expr(
        PG + " alert PostgresReplicationLaggingMore1Hour",
        "(pg_replication_lag{} > 3600) and on (job, instance, server) (pg_replication_is_replica{} == 1)",
    ),
    Expr(
        PG + " alert PostgresReplicationRoleChanged",
        "pg_replication_is_replica{} and changes(pg_replication_is_replica{}[1m]) > 0",
    ),
    Expr(PG + " alert PostgresHasReplicationSlotUsed", "pg_replication_slots_active{} == 0"),
    # --- postgres dashboard ($db = postgres) -----------------------------------------------------
    Expr(
        PG + " dashboard",
        'pg_stat_database_numbackends{datname=~"postgres",job=~"postgres",instance=~".+"}',
        abs_tol=COUNT,
    ),
    Expr(
        PG + " dashboard",
        'round(sum by (datname) (rate(pg_stat_database_blks_hit{datname=~"postgres",job=~"postgres",instance=~".+"}[1m]))'
        ' / (sum by (datname)(rate(pg_stat_database_blks_hit{datname=~"postgres",job=~"postgres",instance=~".+"}[1m]))'
        ' + sum by (datname)(rate(pg_stat_database_blks_read{datname=~"postgres",job=~"postgres",instance=~".+"}[1m])))'
        "*100,0.001)",
        abs_tol=5.0,
    ),
    *(
        Expr(
            PG + " dashboard",
            f'sum(irate(pg_stat_database_{column}{{datname=~"postgres",job=~"postgres",instance=~".+"}}[1m]))',
            abs_tol=50.0,
            rel_tol=RATE_REL,
        )
        for column in ("tup_deleted", "tup_fetched", "tup_inserted", "tup_returned", "tup_updated")
    ),
    Expr(
        PG + " dashboard",
        'sum(irate(pg_stat_database_xact_commit{datname=~"postgres",job=~"postgres",instance=~".+"}[1m]))'
        ' + sum(irate(pg_stat_database_xact_rollback{datname=~"postgres",job=~"postgres",instance=~".+"}[1m]))',
        rel_tol=RATE_REL,
    ),
    Expr(
        PG + " dashboard",
        'sum(pg_stat_database_conflicts{datname=~"postgres",job=~"postgres",instance=~".+"})',
    ),
    Expr(
        PG + " dashboard",
        'sum(pg_stat_database_deadlocks{datname=~"postgres",job=~"postgres",instance=~".+"})',
    ),
    Expr(
        PG + " dashboard",
        'irate(pg_stat_bgwriter_buffers_alloc_total{job=~"postgres",instance=~".+"}[1m])',
        abs_tol=BGWRITER,
    ),
    Expr(
        PG + " dashboard",
        'irate(pg_stat_bgwriter_buffers_checkpoint_total{job=~"postgres",instance=~".+"}[1m])',
        abs_tol=BGWRITER,
    ),
    Expr(
        PG + " dashboard",
        'irate(pg_stat_bgwriter_buffers_clean_total{job=~"postgres",instance=~".+"}[1m])',
        abs_tol=BGWRITER,
    ),
    Expr(
        PG + " dashboard",
        'irate(pg_stat_bgwriter_buffers_backend_total{job=~"postgres",instance=~".+"}[1m])',
        abs_tol=BGWRITER,
    ),
    Expr(
        PG + " dashboard",
        'irate(pg_stat_bgwriter_buffers_backend_fsync_total{job=~"postgres",instance=~".+"}[1m])',
        abs_tol=BGWRITER,
    ),
    Expr(PG + " dashboard", 'pg_database_size_bytes{datname=~"postgres"}', rel_tol=0.05),
    Expr(PG + " dashboard", "pg_settings_max_connections"),
    Expr(PG + " dashboard", 'sum by (datname) (pg_locks_count{datname!~"template.*"})', abs_tol=COUNT),
    # --- mysqld-mixin ($job = mysql) --------------------------------------------------------------
    Expr(MYSQL + " alert MySQLDown", "mysql_up != 1"),
    Expr(MYSQL + " alert MySQLDown value", "mysql_up"),
    Expr(
        MYSQL + " rule job:mysql_transactions:rate5m",
        'sum without (command) (rate(mysql_global_status_commands_total{command=~"(commit|rollback)"}[5m]))',
    ),
    Expr(
        MYSQL + " rule instance:mysql_slave_lag_seconds",
        "mysql_slave_status_seconds_behind_master - mysql_slave_status_sql_delay",
    ),
    Expr(MYSQL + " dashboard", 'mysql_global_status_uptime{job=~"mysql", instance=~".+"}', abs_tol=COUNT),
    Expr(
        MYSQL + " dashboard",
        'rate(mysql_global_status_queries{job=~"mysql", instance=~".+"}[1m])',
        rel_tol=RATE_REL,
    ),
    Expr(
        MYSQL + " dashboard",
        'rate(mysql_global_status_questions{job=~"mysql", instance=~".+"}[1m])',
        rel_tol=RATE_REL,
    ),
    Expr(
        MYSQL + " dashboard", 'sum(rate(mysql_global_status_slow_queries{job=~"mysql", instance=~".+"}[1m]))'
    ),
    Expr(
        MYSQL + " dashboard",
        'sum(rate(mysql_global_status_bytes_received{job=~"mysql", instance=~".+"}[1m]))',
        rel_tol=RATE_REL,
    ),
    Expr(
        MYSQL + " dashboard",
        'sum(rate(mysql_global_status_bytes_sent{job=~"mysql", instance=~".+"}[1m]))',
        rel_tol=1.0,  # SHOW GLOBAL STATUS replies of different sizes: the exporter's and ours differ
    ),
    Expr(
        MYSQL + " dashboard",
        'sum(max_over_time(mysql_global_status_threads_connected{job=~"mysql", instance=~".+"}[1m]))',
        abs_tol=COUNT,
    ),
    Expr(
        MYSQL + " dashboard",
        'sum(avg_over_time(mysql_global_status_threads_running{job=~"mysql", instance=~".+"}[1m]))',
        abs_tol=COUNT,
    ),
    Expr(
        MYSQL + " dashboard",
        'sum(mysql_global_status_max_used_connections{job=~"mysql", instance=~".+"})',
        abs_tol=COUNT,
    ),
    Expr(MYSQL + " dashboard", 'sum(mysql_global_variables_max_connections{job=~"mysql", instance=~".+"})'),
    Expr(MYSQL + " dashboard", 'sum(mysql_global_variables_thread_cache_size{job=~"mysql", instance=~".+"})'),
    Expr(MYSQL + " dashboard", 'sum(mysql_global_variables_key_buffer_size{job=~"mysql", instance=~".+"})'),
    Expr(
        MYSQL + " dashboard", 'mysql_global_variables_innodb_buffer_pool_size{job=~"mysql", instance=~".+"}'
    ),
    Expr(MYSQL + " dashboard", 'mysql_global_variables_table_open_cache{job=~"mysql", instance=~".+"}'),
    Expr(MYSQL + " dashboard", 'mysql_global_variables_open_files_limit{job=~"mysql", instance=~".+"}'),
    Expr(
        MYSQL + " dashboard", 'mysql_global_status_open_tables{job=~"mysql", instance=~".+"}', abs_tol=COUNT
    ),
    Expr(
        MYSQL + " dashboard",
        'rate(mysql_global_status_handlers_total{job=~"mysql",instance=~".+", handler!~"commit|rollback|savepoint.*|prepare"}[1m])',
        abs_tol=50.0,
        rel_tol=1.0,
    ),
    Expr(
        MYSQL + " dashboard",
        'sum(rate(mysql_global_status_created_tmp_tables{job=~"mysql", instance=~".+"}[1m]))',
        abs_tol=5.0,
        rel_tol=1.0,
    ),
    Expr(
        MYSQL + " dashboard",
        'sum(rate(mysql_global_status_aborted_connects{job=~"mysql", instance=~".+"}[1m]))',
    ),
    Expr(MYSQL + " dashboard", 'mysql_info_schema_processlist_threads{job=~"mysql", instance=~".+"}'),
    Expr(
        MYSQL + " dashboard",
        'sum(mysql_global_status_innodb_page_size{job=~"mysql", instance=~".+"} * on (instance)'
        ' mysql_global_status_buffer_pool_pages{job=~"mysql", instance=~".+", state="data"})',
        rel_tol=0.1,
    ),
    # --- node-mixin (nodeExporterSelector job="node"; fsSelector fstype!=""; rateInterval 5m) ------
    Expr(
        NODE + " rule instance:node_num_cpu:sum",
        'count without (cpu, mode) (node_cpu_seconds_total{job="node",mode="idle"})',
    ),
    Expr(
        NODE + " rule instance:node_cpu_utilisation:rate5m",
        '1 - avg without (cpu) (sum without (mode) (rate(node_cpu_seconds_total{job="node", mode=~"idle|iowait|steal"}[5m])))',
        abs_tol=0.1,
    ),
    Expr(
        NODE + " rule instance:node_load1_per_cpu:ratio",
        'node_load1{job="node"} / count without (cpu, mode) (node_cpu_seconds_total{job="node",mode="idle"})',
        abs_tol=0.2,
    ),
    Expr(
        NODE + " rule instance:node_memory_utilisation:ratio",
        '1 - ((node_memory_MemAvailable_bytes{job="node"} or (node_memory_Buffers_bytes{job="node"} +'
        ' node_memory_Cached_bytes{job="node"} + node_memory_MemFree_bytes{job="node"} +'
        ' node_memory_Slab_bytes{job="node"})) / node_memory_MemTotal_bytes{job="node"})',
        abs_tol=0.02,
    ),
    Expr(
        NODE + " rule instance:node_vmstat_pgmajfault:rate5m",
        'rate(node_vmstat_pgmajfault{job="node"}[5m])',
        abs_tol=50.0,
    ),
    Expr(
        NODE + " alert NodeFilesystemAlmostOutOfSpace value",
        'node_filesystem_avail_bytes{job="node",fstype!="",mountpoint!=""} / node_filesystem_size_bytes'
        '{job="node",fstype!="",mountpoint!=""} * 100',
        abs_tol=0.5,
    ),
    Expr(
        NODE + " alert NodeFilesystemAlmostOutOfSpace",
        '(node_filesystem_avail_bytes{job="node",fstype!="",mountpoint!=""} / node_filesystem_size_bytes'
        '{job="node",fstype!="",mountpoint!=""} * 100 < 5 and node_filesystem_readonly'
        '{job="node",fstype!="",mountpoint!=""} == 0)',
    ),
    Expr(
        NODE + " alert NodeFilesystemAlmostOutOfFiles value",
        'node_filesystem_files_free{job="node",fstype!="",mountpoint!=""} / node_filesystem_files'
        '{job="node",fstype!="",mountpoint!=""} * 100',
        abs_tol=0.5,
    ),
    Expr(
        NODE + " alert NodeFilesystemReadonly",
        'node_filesystem_readonly{job="node",fstype!="",mountpoint!=""} == 0',
    ),
    Expr(
        NODE + " alert NodeFileDescriptorLimit value",
        'node_filefd_allocated{job="node"} * 100 / node_filefd_maximum{job="node"}',
        abs_tol=0.5,
    ),
    Expr(
        NODE + " alert NodeCPUHighUsage value",
        'sum without(mode) (avg without (cpu) (rate(node_cpu_seconds_total{job="node", mode!~"idle|iowait"}[2m]))) * 100',
        abs_tol=15.0,
    ),
    Expr(
        NODE + " alert NodeMemoryHighUtilization value",
        '100 - (node_memory_MemAvailable_bytes{job="node"} / node_memory_MemTotal_bytes{job="node"} * 100)',
        abs_tol=2.0,
    ),
    Expr(
        NODE + " alert NodeMemoryMajorPagesFaults value",
        'rate(node_vmstat_pgmajfault{job="node"}[5m])',
        abs_tol=50.0,
    ),
    Expr(
        NODE + " rule instance:node_network_receive_bytes_excluding_lo:rate5m",
        'sum without (device) (rate(node_network_receive_bytes_total{job="node", device!="lo"}[5m]))',
        abs_tol=20_000.0,  # bytes/s: the host's other traffic moves between the two sides' scrapes
        rel_tol=RATE_REL,
    ),
    Expr(
        NODE + " rule instance_device:node_disk_io_time_seconds:rate5m",
        'rate(node_disk_io_time_seconds_total{job="node", device!=""}[5m])',
        abs_tol=0.05,  # share of a second busy: other processes' I/O between the two sides' scrapes
        rel_tol=RATE_REL,
    ),
    Expr(
        NODE + " alert NodeClockNotSynchronising",
        'min_over_time(node_timex_sync_status{job="node"}[5m]) == 0',
    ),
    Expr(NODE + " dashboard", 'node_boot_time_seconds{job="node"}', abs_tol=2.0),
    # --- blackbox dashboards ($job = blackbox) ----------------------------------------------------
    Expr(BLACKBOX, 'probe_success{job=~"blackbox"}'),
    Expr(BLACKBOX, 'avg_over_time(probe_success{job=~"blackbox"}[1m])'),
    Expr(BLACKBOX, 'probe_duration_seconds{job=~"blackbox"}', abs_tol=0.1),
    Expr(BLACKBOX, 'sum by (instance) (probe_http_duration_seconds{job=~"blackbox"})', abs_tol=0.1),
    Expr(BLACKBOX, 'probe_http_duration_seconds{job=~"blackbox", phase="tls"}', abs_tol=0.05),
    Expr(BLACKBOX, 'count by (phase) (probe_http_duration_seconds{job=~"blackbox"})'),
    Expr(BLACKBOX, 'probe_http_status_code{job=~"blackbox"}'),
    Expr(BLACKBOX, 'probe_http_ssl{job=~"blackbox"} == 0'),
    Expr(BLACKBOX, 'probe_http_version{job=~"blackbox"}'),
    Expr(BLACKBOX, 'probe_http_redirects{job=~"blackbox"}'),
    Expr(BLACKBOX, 'probe_http_content_length{job=~"blackbox"}'),
    Expr(BLACKBOX, 'probe_dns_lookup_time_seconds{job=~"blackbox"}', abs_tol=0.05),
    Expr(BLACKBOX, 'probe_ip_protocol{job=~"blackbox"}'),
    Expr(BLACKBOX, '(probe_ssl_earliest_cert_expiry{job=~"blackbox"} - time()) / 86400'),
)

# Expressions that answer for the exporters but not for the sidecar, and why (the README says the same).
GAPS: dict[str, str] = {}
