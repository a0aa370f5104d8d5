"""logs: recent CloudWatch events of /aws/sagemaker/Endpoints/$ENDPOINT_NAME; FOLLOW=1 keeps tailing."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from .errors import NotFound
from .session import Aws
from .topology import endpoints

log = logging.getLogger(__name__)


def log_group(endpoint_name: str) -> str:
    """Where SageMaker writes the container's stdout/stderr."""
    return f"/aws/sagemaker/Endpoints/{endpoint_name}"


def fetch(aws: Aws, group: str, start_ms: int, seen: set[str]) -> list[dict]:
    """Events since `start_ms` not seen yet, oldest first (all pages)."""
    events, token = [], None
    while True:
        kwargs = {"logGroupName": group, "startTime": start_ms} | ({"nextToken": token} if token else {})
        page = aws.call(
            f"read log group {group}", aws.logs.filter_log_events, absent=["ResourceNotFoundException"], **kwargs
        )
        if page is None:
            raise NotFound(
                f"log group {group} does not exist: the endpoint has not written logs yet "
                "(is it deployed and starting? see `make status`)"
            )
        events += [event for event in page.get("events", []) if event["eventId"] not in seen]
        token = page.get("nextToken")
        if not token:
            return sorted(events, key=lambda event: (event["timestamp"], event["eventId"]))


def format_event(event: dict) -> str:
    """`2026-11-28T01:02:03Z stream | message`."""
    when = datetime.fromtimestamp(event["timestamp"] / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    stream = event.get("logStreamName", "").rsplit("/", 1)[-1]
    return f"{when} {stream} | {event['message'].rstrip()}"


def run_logs(aws: Aws) -> int:
    """`logs`: print the last SINCE minutes of every endpoint of ARCH (split: both, each line naming its
    endpoint); with FOLLOW=1 poll for new events until interrupted."""
    config = aws.config
    names = [endpoint.name for endpoint in endpoints(config)]
    start = int((time.time() - config.integer("SINCE", 60, 1, 60 * 24 * 14) * 60) * 1000)
    starts = dict.fromkeys(names, start)
    follow, poll = config.flag("FOLLOW"), config.number("POLL_SECONDS", 5.0)
    seen: set[str] = set()
    try:
        while True:
            events = sorted(
                ((name, event) for name in names for event in fetch(aws, log_group(name), starts[name], seen)),
                key=lambda item: (item[1]["timestamp"], item[1]["eventId"]),
            )
            for name, event in events:
                log.info("%s%s", f"{name} " if len(names) > 1 else "", format_event(event))
                seen.add(event["eventId"])
                starts[name] = max(starts[name], event["timestamp"])
            if not follow:
                if not seen:
                    log.info(
                        "no events in %s in the last %s minutes",
                        " or ".join(map(log_group, names)),
                        config.get("SINCE", "60"),
                    )
                return 0
            time.sleep(poll)
    except KeyboardInterrupt:
        return 0
