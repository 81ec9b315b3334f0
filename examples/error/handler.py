def handler(event, context):
    if event.get("ok"):
        return {"ok": True}
    raise ValueError(f"cannot handle {event!r}")
