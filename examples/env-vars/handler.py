import os


def handler(event, context):
    # GREETING is set with `skyscale function create ... --env GREETING=Howdy`.
    greeting = os.environ.get("GREETING", "Hello")
    return {
        "message": f"{greeting}, {event.get('name', 'World')}!",
        "function": os.environ["AWS_LAMBDA_FUNCTION_NAME"],
        "memory_mb": context.memory_limit_in_mb,
    }
