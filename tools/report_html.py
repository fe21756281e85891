"""The hall report's page: one self-contained HTML file, charts drawn here as inline SVG.

No script, no external file: it opens from a USB stick or a mail attachment the same way.
"""
from html import escape

from tools.report import DEFINITIONS, DIMENSIONS, FIGURES, SCORES, STATE_TEXT

CSS = """
body{font-family:"Noto Sans CJK SC","Microsoft YaHei","PingFang SC",sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:2px solid #36c;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #bbb;padding:.2em .45em;text-align:right}
th{background:#eef2fa}td.l,th.l{text-align:left}
.warn{background:#fff1e0;border:2px solid #e67e22;padding:.6em;margin:.6em 0}
.ok{background:#eaf7ea;border:1px solid #5a5;padding:.6em}
tr.bad td{background:#fde8e8}.small{font-size:.8em;color:#555}
svg{display:block;margin:.4em 0 1.2em}.charts{display:flex;flex-wrap:wrap;gap:1.5em}
"""


def t(zh, en):
    return "%s <span class=small>%s</span>" % (escape(zh), escape(en))


def pct(x):
    return "–" if x is None else "%.1f%%" % (100 * x)


def num(x):
    return "–" if x is None else ("%g" % x)


def fmt(key, v):
    if key.endswith(("_rate", "_share")):
        return pct(v)
    return num(v) if not isinstance(v, str) else escape(v)


# --- charts ------------------------------------------------------------------------------

def _text(x, y, s, anchor="start", size=12, color="#222"):
    return '<text x="%.1f" y="%.1f" font-size="%d" text-anchor="%s" fill="%s">%s</text>' % (
        x, y, size, anchor, color, escape(str(s)))


def hbars(title, items, vmax, width=560, label_w=190, marks=None, color="#36c", text_w=80):
    """Horizontal bars: items = [(label, value or None, text)]; marks = {label: value} drawn
    as a red tick (a target)."""
    row = 22
    h = 28 + row * max(1, len(items))
    plot = width - label_w - text_w
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img">' % (width, h),
           _text(0, 16, title, size=13)]
    for i, (label, v, txt) in enumerate(items):
        y = 26 + i * row
        out.append(_text(label_w - 6, y + 14, _short(label), "end"))
        w = 0 if v is None or not vmax else plot * min(v, vmax) / vmax
        out.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (label_w, y + 2, w, row - 6, color))
        # with target marks the text stands after the plot, clear of the red tick
        out.append(_text(label_w + (plot + 8 if marks else w + 4), y + 14, txt))
        m = (marks or {}).get(label)
        if m is not None and vmax:
            x = label_w + plot * min(m, vmax) / vmax
            out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#d22" stroke-width="2"/>' % (x, y, x, y + row - 2))
    if not items:
        out.append(_text(label_w, 40, "无数据 no data"))
    out.append("</svg>")
    return "".join(out)


def _short(label, n=16):
    """At most n characters (a CJK character is about two Latin ones wide)."""
    width, out = 0, ""
    for ch in str(label):
        width += 2 if ord(ch) > 0x2e80 else 1
        if width > 2 * n:
            return out + "…"
        out += ch
    return out


def columns(title, values, labels, fmt_v=num, width=620, height=200, color="#36c"):
    """Vertical columns, one per label (e.g. the hours of the day)."""
    n = max(1, len(values))
    vmax = max([v for v in values if v is not None] or [0])
    left, bottom, top = 40, 30, 40
    plot_h = height - bottom - top
    cw = (width - left - 10) / n
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img">' % (width, height),
           _text(0, 16, title, size=13),
           '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>' % (left, height - bottom, width - 10, height - bottom)]
    for i, (v, lab) in enumerate(zip(values, labels)):
        x = left + i * cw
        hgt = 0 if not v or not vmax else plot_h * v / vmax
        out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>' % (
            x + 2, height - bottom - hgt, max(1, cw - 4), hgt, color))
        if v:
            out.append(_text(x + cw / 2, height - bottom - hgt - 3, fmt_v(v), "middle", 10))
        out.append(_text(x + cw / 2, height - bottom + 14, lab, "middle", 10))
    out.append("</svg>")
    return "".join(out)


# --- sections --------------------------------------------------------------------------

def integrity_section(rep):
    devs = rep["devices"]
    bad = [d for d in devs if not d["clean"]]
    out = ["<h2>%s</h2>" % t("数据完整性", "Data integrity")]
    unreadable = rep.get("unreadable") or ()
    if unreadable:
        out.append('<div class=warn><b>%s</b> %s</div>' % (
            t("%d 条已验证事件无法读取, 未计入" % len(unreadable),
              "%d verified event(s) left out: data or device clock unreadable" % len(unreadable)),
            escape(", ".join("%s#%d" % u for u in unreadable[:20]))))
    if bad:
        out.append('<div class=warn><b>%s</b><ul>' % t("注意：以下设备的数据有问题", "Attention: data problems on these devices"))
        for d in bad:
            what = []
            if d["suspect_rows"]:
                what.append("%d 可疑记录 suspect rows (%s), 未计入 not counted" % (
                    d["suspect_rows"], ", ".join("%s %d" % kv for kv in sorted(d["suspect"].items()))))
            if d["gaps"]:
                what.append("缺号 missing seq %s (%d), 指标可能不全 figures may be incomplete" % (
                    _ranges(d["gaps"]), d["missing"]))
            if d["chain_breaks"]:
                what.append("%d 链断 chain breaks" % d["chain_breaks"])
            out.append("<li>%s: %s</li>" % (escape(d["device"]), escape("; ".join(what))))
        out.append("</ul></div>")
    else:
        out.append("<p class=ok>%s</p>" % t("全部设备数据完整：无可疑记录、无缺号",
                                             "All devices clean: no suspect rows, no missing seq"))
    out.append("<table><tr>%s</tr>" % "".join("<th>%s</th>" % h for h in (
        t("设备", "device"), t("事件", "events"), t("序号", "seq"), t("缺号", "missing seq (gaps)"),
        t("已申报丢弃", "announced drops"), t("可疑", "suspect"), t("重复", "duplicates"),
        t("链断", "chain breaks"), t("状态", "state"))))
    for d in devs:
        seq = "–" if d["first_seq"] is None else "%d–%d" % (d["first_seq"], d["last_seq"])
        cells = (escape(d["device"]), d["events"], seq, _ranges(d["gaps"]) or "0", _ranges(d["dropped"]) or "0",
                 d["suspect_rows"], d["duplicates"], d["chain_breaks"],
                 "正常 clean" if d["clean"] else "⚠ 已标记 marked")
        out.append("<tr%s>%s</tr>" % ("" if d["clean"] else " class=bad", "".join(
            "<td%s>%s</td>" % (" class=l" if i in (0, 8) else "", c) for i, c in enumerate(cells))))
    out.append("</table><p class=small>%s</p>" % escape(
        "Figures are computed from verified events only (each device's signature checked, one per device and seq). "
        "Suspect rows (forged, unsigned, malformed) are kept apart and never counted. A gap is a seq missing between "
        "a device's first and last stored event that the device did not announce with outbox.dropped. "
        "This table covers the whole database, whatever days are reported."))
    incomplete = [r for r in rep["ratings"] if not r["complete"]]
    if incomplete:
        out.append('<div class=warn>%s: %d (%s)</div>' % (
            t("评价未能关联办结/取号记录", "ratings whose finished service or ticket is not in the database"),
            len(incomplete), escape(", ".join(r["rating_id"] for r in incomplete[:20]))))
    return "".join(out)


def _ranges(rs):
    return ", ".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in rs)


def figures_section(rep):
    figs = rep["figures"]
    keys = [k for k, _zh, _en in FIGURES]
    head = "".join("<th>%s</th>" % t(zh, en) for _k, zh, en in FIGURES)
    out = ["<h2>%s</h2>" % t("指标 (GB/T 32169.4)", "Figures (GB/T 32169.4 style)")]
    for dim, zh, en in DIMENSIONS:
        out.append("<h3>%s</h3><table><tr><th class=l>%s</th>%s</tr>" % (t("按" + zh, "by " + en.lower()), t(zh, en), head))
        for k, r in figs.rows(dim):
            out.append("<tr><td class=l>%s</td>%s</tr>" % (escape(_dim_label(rep, dim, k)),
                                                          "".join("<td>%s</td>" % fmt(c, r[c]) for c in keys)))
        tot = figs.total.row()
        out.append("<tr><th class=l>%s</th>%s</tr></table>" % (t("合计", "total"),
                                                               "".join("<th>%s</th>" % fmt(c, tot[c]) for c in keys)))
    out.append("<h3>%s</h3><dl>" % t("定义", "Definitions"))
    for name, text in DEFINITIONS:
        out.append("<dt><b>%s</b></dt><dd>%s</dd>" % (escape(name), escape(text)))
    out.append("</dl>")
    if figs.invalid:
        out.append("<p class=warn>%d ratings with an invalid score, not counted</p>" % figs.invalid)
    return "".join(out)


def _dim_label(rep, dim, key):
    hall = rep["hall"]
    if dim == "service":
        return "%s %s" % (key, hall.service_name(key)) if key in hall.services else key
    if dim == "counter":
        return hall.counter_name(key)
    return key


def charts_section(rep):
    figs, hall = rep["figures"], rep["hall"]
    out = ["<h2>%s</h2><div class=charts>" % t("图表", "Charts")]
    for dim, zh, en in DIMENSIONS:
        items = [(_dim_label(rep, dim, k), r["satisfaction_rate"], "%s (%d)" % (pct(r["satisfaction_rate"]), r["ratings"]))
                 for k, r in figs.rows(dim) if r["ratings"]]
        out.append(hbars("满意率 Satisfaction by %s (%s)" % (en.lower(), zh), items, 1.0))
    tot = figs.total.row()
    items = [("%d %s" % (s, SCORES[s][0]), tot["s%d" % s], str(tot["s%d" % s])) for s in (5, 4, 3, 2, 1)]
    out.append(hbars("评分分布 Score distribution", items, max([v for _l, v, _t in items] + [1]), color="#4a4"))
    reasons = tot["bad_reasons"]
    items = [(hall.reason_text(k), v, str(v)) for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])]
    out.append(hbars("差评原因 Bad-rating reasons", items, max(list(reasons.values()) + [1]), color="#c33"))
    rows = dict(figs.rows("service"))
    items, marks = [], {}
    for code, tgt in sorted(rep["targets"].items()):
        r = rows.get(code)
        if not r:
            continue
        label = code
        avg = r["avg_wait_s"] / 60 if r["avg_wait_s"] is not None else None
        marks[label] = tgt["target_s"] / 60
        items.append((label, avg, "%s min · 超时 over: %s · 目标 target %d min" % (
            "–" if avg is None else "%.1f" % avg, pct(r["over_target_share"]), tgt["target_s"] // 60)))
    vmax = max([v for _l, v, _t in items if v is not None] + list(marks.values()) + [1]) * 1.1
    out.append(hbars("平均等候与目标(红线) Average wait vs target (red), min", items, vmax, width=860, text_w=330, marks=marks,
                     color="#e67e22"))
    hours = [h for h in range(24) if figs.arrivals[h] or figs.hour_served[h][1]]
    span = list(range(min(hours), max(hours) + 1)) if hours else list(range(8, 18))
    out.append(columns("每小时取号 Arrivals (tickets issued) per hour", [figs.arrivals[h] for h in span],
                       ["%02d" % h for h in span]))
    avg = [figs.hour_served[h][0] / 60 / figs.hour_served[h][1] if figs.hour_served[h][1] else None for h in span]
    out.append(columns("每小时平均办理时间(分钟) Average service time per hour (min, by hour finished)", avg,
                       ["%02d" % h for h in span], fmt_v=lambda v: "%.1f" % v, color="#8a4"))
    out.append("</div>")
    src = ("目标来自配置 targets from %s" % hall.source) if hall.source else \
        "未给配置：各事项目标按默认 15 分钟 no --config: every service's target is the firmware default, 15 min"
    out.append("<p class=small>%s</p>" % escape(src))
    return "".join(out)


def bad_section(rep):
    bad = rep["bad"]
    out = ["<h2>%s</h2>" % t("差评及回访", "Bad ratings and follow-up"),
           "<p class=small>%s</p>" % escape(
               "回访期限 deadline = 评价业务日 + %d 个工作日 working days (周六周日不计 Saturdays and Sundays "
               "skipped; public holidays not known); state as of %s. Record a follow-up: "
               "tools/qterm followup --db DB --record 办件编号 --note TEXT" % (rep["followup_days"], rep["today"]))]
    if not bad:
        return "".join(out) + "<p>%s</p>" % t("无差评", "No bad ratings")
    cols = (("record_id", "办件编号", "record"), ("rating_time", "评价时间", "rated"), ("counter", "窗口", "counter"),
            ("staff_id", "工作人员", "staff"), ("service_code", "事项", "service"), ("level_name", "评价", "level"),
            ("reason", "原因", "reason"), ("followup_requested", "要求回访", "asked"),
            ("deadline", "期限", "deadline"), ("followup_state", "回访状态", "state"),
            ("followup_note", "回访记录", "note"))
    out.append("<table><tr>%s</tr>" % "".join("<th>%s</th>" % t(zh, en) for _k, zh, en in cols))
    for b in bad:
        cells = []
        for k, _zh, _en in cols:
            v = b[k]
            if k == "followup_state":
                v = STATE_TEXT[v]
            elif k == "followup_requested":
                v = "是 yes" if v else "否 no"
            elif k == "rating_time":
                v = v[:19].replace("T", " ")
            cells.append("<td class=l>%s</td>" % escape("" if v is None else str(v)))
        cls = " class=bad" if b["followup_state"] in ("overdue", "done late") or b["device_gaps"] else ""
        out.append("<tr%s>%s</tr>" % (cls, "".join(cells)))
    out.append("</table>")
    return "".join(out)


def files_section():
    files = ("figures_by_counter.csv", "figures_by_staff.csv", "figures_by_service.csv", "figures_by_day.csv",
             "ratings.csv", "bad_ratings.csv", "gbt39734_records.csv", "gbt39734_records.json", "figures.json")
    return "<h2>%s</h2><p>%s</p><p class=small>%s</p>" % (
        t("导出文件", "Exported files"), " · ".join('<a href="%s">%s</a>' % (f, f) for f in files),
        escape("CSV files are UTF-8 with a BOM (Excel opens the Chinese correctly); rates are fractions 0–1. "
               "gbt39734_records: one record per rating (GB/T 39734-2020 shape): 办件编号 = ticket-day-issuing device."))


def page(rep):
    hall = rep["hall"]
    days = sorted(rep["figures"].by["day"])
    period = "%s – %s" % (rep["from"] or (days[0] if days else "…"), rep["to"] or (days[-1] if days else "…"))
    tot = rep["figures"].total.row()
    head = ("<h1>%s %s</h1><p>%s %s · %s %s · %s %d · %s %s · %s %s</p>" % (
        escape(hall.name.get("zh", "")), escape(hall.name.get("en", "")),
        t("报告期", "period"), escape(period), t("满意率", "satisfaction"), pct(tot["satisfaction_rate"]),
        t("评价", "ratings"), tot["ratings"], t("差评率", "bad rate"), pct(tot["bad_rate"]),
        t("过号率", "no-show rate"), pct(tot["no_show_rate"])))
    return "".join((
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>服务评价报告 Hall report</title>',
        "<style>%s</style></head><body>" % CSS, head, integrity_section(rep), charts_section(rep),
        figures_section(rep), bad_section(rep), files_section(),
        "<p class=small>qterm report · %d events · %s</p></body></html>" % (rep["events"], escape(rep["today"]))))
