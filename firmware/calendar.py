"""Civil dates from UTC epoch seconds with integer maths only.

time.gmtime differs between ports (the ESP32 counts from 2000, unix from 1970), so the
firmware never relies on it for business days.
"""


def civil(days):
    """(year, month, day) for days since 1970-01-01 (proleptic Gregorian)."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y, m, d)


def business_day(epoch, tz_offset_min, reset_hour):
    """(day string 'YYYY-MM-DD', epoch when that business day started).

    A business day runs from reset_hour local time to reset_hour the next day, so a
    terminal reset at 03:00 keeps the evening's numbers until the night is over.
    """
    t = epoch + tz_offset_min * 60 - reset_hour * 3600
    days = t // 86400
    y, m, d = civil(days)
    start = days * 86400 + reset_hour * 3600 - tz_offset_min * 60
    return ("%04d-%02d-%02d" % (y, m, d), start)


def local_minute(epoch, tz_offset_min):
    """Minutes after local midnight."""
    t = epoch + tz_offset_min * 60
    return (t % 86400) // 60


def stamp(epoch, tz_offset_min):
    """'YYYY-MM-DD HH:MM' local, for tickets and displays."""
    t = epoch + tz_offset_min * 60
    days = t // 86400
    s = t - days * 86400
    y, m, d = civil(days)
    return "%04d-%02d-%02d %02d:%02d" % (y, m, d, s // 3600, (s // 60) % 60)
