"""The hello example: shows what a Liftoff run sees (config, run id, queue) and streams output."""

import json
import os
import sys
import time


def main() -> int:
    try:
        config = json.loads(os.environ.get("LIFTOFF_CONFIG") or "{}")
    except json.JSONDecodeError:
        config = {}
    greeting = config.get("greeting", "hello") if isinstance(config, dict) else "hello"
    print(greeting, flush=True)
    print(f"run id: {os.environ.get('LIFTOFF_RUN_ID', '?')}", flush=True)
    print(f"queue: {os.environ.get('LIFTOFF_QUEUE', '?')}", flush=True)
    for i in range(1, 6):
        print(f"count {i}", flush=True)
        if i < 5:
            time.sleep(0.2)
    print("this line goes to stderr", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
