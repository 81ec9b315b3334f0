def handler(event, context):
    return {
        "message": f"Hello, {event.get('name', 'World')}!",
        "request_id": context.request_id
    }
