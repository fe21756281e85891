"""The words of last_error for failures a test cannot easily cause for real.

Each case hands the client's failure path the exception MicroPython (or mbedTLS on an
ESP32 without its error texts) raises for it and prints: CASE <name> <last_error>.
"""
import sys

sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0] if "/" in sys.argv[0] else ".")
from _args import say  # noqa: E402

from firmware import mqtt  # noqa: E402

CASES = [
    ("etimedout", OSError(110), False, False),
    ("ehostunreach", OSError(113), False, False),
    ("enetunreach", OSError(101), False, False),
    ("econnrefused", OSError(111), False, False),
    ("reset_after_connack", OSError(104), False, True),
    ("eof_after_connack", OSError(0), False, True),
    ("reset_before_connack", OSError(104), False, False),
    ("tls_reset_in_handshake", OSError(104), True, False),
    ("verify_failed_no_text", OSError(-0x2700), True, False),
    ("fatal_alert", OSError(-0x7780, "MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE"), True, False),
    ("two_checks", ValueError("\nThe certificate validity has expired\n"
                              "\nThe certificate is not correctly signed by the trusted CA\n"), True, False),
    ("other_check", ValueError("\nUsage does not match the keyUsage extension\n"), True, False),
    ("codec", ValueError("ack length"), False, True),
    ("memory", MemoryError(), False, True),
    ("enomem", OSError(12), False, True),
]


class _Ctx:
    """Stands for an ssl.SSLContext: only whether there is one matters here."""


for name, exc, tls, reached in CASES:
    c = mqtt.MQTTClient("why", "127.0.0.1", ssl_context=_Ctx() if tls else None)
    c.connected = reached  # a CONNACK accepted the connection that fails
    c._end(c._gen, exc)
    say("CASE", name, c.last_error)
c = mqtt.MQTTClient("why", "127.0.0.1")
for rc in range(1, 6):
    c._end(c._gen, 6 + rc)  # the line of the table mqtt_link.connect asks for on return code rc
    say("CASE", "connack%d" % rc, c.last_error)
