"""Every key the firmware reads, per object: anything else in a config is a typo or a
misunderstanding and is refused (keys starting with "_" are free for comments). Shared by the
validator (firmware/config.py) and by config.set's first check (firmware/commands.py), which
refuses an unknown key at once instead of after the restart that validates the rest."""

KEYS = {
    "": ("version", "site", "device", "role", "key", "hall", "languages", "tz_offset_min",
         "day_reset_hour", "heartbeat_s", "voice", "services", "counters", "queue", "rating",
         "printer", "broker", "outbox", "commands", "wifi", "board", "ntp", "hall_key", "link",
         "staff"),
    "service": ("code", "prefix", "name", "hours", "daily_limit", "target_min", "avg_service_s"),
    "counter": ("id", "name", "services", "staff", "device"),
    "link": ("kiosk", "counter", "request_key", "calls"),
    "queue": ("max_recalls", "priority_run", "max_waiting", "skipped_keep", "next_guard_s"),
    "rating": ("window_s", "reason_window_s", "reasons"),
    "printer": ("cols", "notice", "qr_prefix", "settle_ms", "large_print"),
    "broker": ("host", "port", "keepalive", "tls", "ca", "server_name", "user", "password", "confirm_s",
               "client_cert", "client_key"),
    "outbox": ("max_kb",),
    "commands": ("window_s",),
    "wifi": ("ssid", "password", "hostname"),
}
