"""Words a citizen or staff member sees, in Chinese and the second language.

Kept in one table so a hall can check every sign in one place; refusal reason codes
(ticket.refused, command.rejected) map to these keys.
"""

TEXT = {
    "welcome": ("欢迎光临 请取号", "Welcome - please take a ticket"),
    "call": ("请 %s 号到 %s 办理", "%s please go to %s"),
    "serving": ("正在办理 %s", "Now serving %s"),
    "rate": ("请对本次服务评价 %s", "Please rate this service %s"),
    "reason": ("请选择不满意原因", "Why were you not satisfied?"),
    "thanks": ("谢谢您的评价", "Thank you for your rating"),
    "paused": ("暂停服务 %s", "Service paused %s"),
    "closed": ("本窗口已停止服务", "This counter is closed"),
    "ticket": ("您的号码 %s 前面 %d 人", "Your number %s, %d ahead"),
    "refused.closed": ("不在办理时间", "Outside opening hours"),
    "refused.limit": ("今日号已取完", "No more tickets today"),
    "refused.queue_full": ("等候人数已满 请稍后", "Queue full - please wait"),
    "refused.no_counter": ("暂无窗口办理该业务", "No counter open for this service"),
    "refused.unknown_service": ("无此业务", "Unknown service"),
    "refused.paper_out": ("打印机缺纸 请联系工作人员", "Printer out of paper - please ask staff"),
    "refused.printer_offline": ("打印机故障 请联系工作人员", "Printer fault - please ask staff"),
    "refused.outbox_full": ("存储已满 请联系工作人员", "Storage full - please ask staff"),
    "refused.storage_error": ("存储故障 请联系工作人员", "Storage fault - please ask staff"),
    "refused.nobody_waiting": ("当前无人等候", "Nobody waiting"),
    "refused.not_serving": ("当前无办理中的号码", "No ticket being served"),
    "refused.counter_paused": ("窗口暂停中 请先恢复", "Counter paused - resume first"),
    "refused.counter_closed": ("窗口已关闭", "Counter closed"),
    "refused.people_waiting": ("仍有 %s 人等候 不能关闭", "%s still waiting - cannot close"),
    "refused.serving": ("正在办理 %s 请先结束", "Serving %s - finish first"),
    "refused.already_paused": ("窗口已暂停", "Already paused"),
    "refused.not_paused": ("窗口未暂停", "Counter is not paused"),
    "refused.already_closed": ("窗口已关闭", "Already closed"),
    "refused.unknown_counter": ("无此窗口", "Unknown counter"),
    "refused.not_skipped": ("该号未过号", "Ticket was not skipped"),
    "refused.already_requeued": ("该号已重排过一次", "Ticket already requeued once"),
    "refused.same_counter": ("不能转给本窗口", "Cannot transfer to the same counter"),
    "refused.busy": ("正在打印 请稍候", "Printing - please wait"),
    "config.bad": ("配置错误 %s", "Config error %s"),
    "storage.full": ("存储已满 请联系技术人员", "Storage full - call a technician"),
    "net.down": ("网络断开 数据已保存", "Offline - data kept"),
}


def lines(key, languages, *args):
    """The message as one line per configured language (at most two)."""
    zh, second = TEXT.get(key) or (key, key)
    out = []
    for i, text in enumerate((zh, second)):
        if i >= len(languages):
            break
        if args:
            try:
                text = text % args
            except TypeError:
                pass
        out.append(text)
    return out


def refusal(reason, languages, detail=""):
    key = "refused." + reason
    if key not in TEXT:
        return [reason]
    if "%s" in TEXT[key][0]:
        return lines(key, languages, detail)
    return lines(key, languages)
