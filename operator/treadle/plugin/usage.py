"""What `kubectl treadle COMMAND --help` shows below the flags: examples of each command, by
its path (`sync run`).  A unit test checks that every command has some."""

from __future__ import annotations

EXAMPLES: dict[str, str] = {
    "example": """\
  kubectl treadle example                        # the shipped examples, numbered
  kubectl treadle example hello | kubectl apply -f -""",
    "get": """\
  kubectl treadle get hello                      # each task: phase, attempts, time, worker
  kubectl treadle get hello -o wide              # with actions, start times and whole errors
  kubectl treadle get hello -o yaml              # the Workflow as the API server holds it
  kubectl treadle get long-run -w                # watch it change until it ends""",
    "list": """\
  kubectl treadle list                           # this namespace's workflows, newest first
  kubectl treadle list -A                        # every namespace's""",
    "logs": """\
  kubectl treadle logs hello                     # every attempt of every task
  kubectl treadle logs hello shout --attempt 2   # one task's second attempt
  kubectl treadle logs fan-out square --item 3   # one forEach child
  kubectl treadle logs long-run -f               # follow: running attempts every 2 s""",
    "submit": """\
  kubectl treadle submit etl -p day=2026-12-01 --watch   # WorkflowTemplate etl, one param
  kubectl treadle submit -f workflow.yaml        # a manifest, under a generated name""",
    "resubmit": """\
  kubectl treadle resubmit hello --watch         # its spec again, as a new Workflow""",
    "stop": """\
  kubectl treadle stop long-run --watch          # running attempts finish; onExit runs""",
    "terminate": """\
  kubectl treadle terminate long-run --watch     # running attempts are cancelled now""",
    "retry": """\
  kubectl treadle retry etl                      # every dead-lettered task, again
  kubectl treadle retry etl --task load          # only load (a Failed workflow runs again)""",
    "dlq list": """\
  kubectl treadle dlq list                       # this namespace's dead letters
  kubectl treadle dlq list etl -o json           # one workflow's, as JSON
  kubectl treadle dlq list -A                    # every namespace's""",
    "lock hold": """\
  kubectl treadle lock hold pipeline orders --for 30m       # keep sync jobs off a pipeline
  kubectl treadle lock hold table warehouse.orders --for 1h""",
    "lock release": """\
  kubectl treadle lock release pipeline orders
  kubectl treadle lock release pipeline orders --force      # whoever holds it""",
    "lock list": """\
  kubectl treadle lock list                      # holders, expiry and fencing transitions""",
    "sync run": """\
  kubectl treadle sync run orders-to-warehouse   # says started, skipped (lock) or waiting""",
    "sync status": """\
  kubectl treadle sync status orders-to-warehouse   # slot, outcome, retry, backfill, locks""",
    "sync backfill": """\
  kubectl treadle sync backfill hourly-report --from 2026-12-01T00:00 --to 2026-12-02T00:00 \\
      --parallel 4 --watch                       # every slot of a day, four at a time
  kubectl treadle sync backfill hourly-report --cancel""",
    "ui": """\
  kubectl treadle ui                             # prints its http://127.0.0.1:<port>/ address
  kubectl treadle ui --port 8080 --open          # a fixed port, opened in a browser""",
}


def epilog(path: str) -> str | None:
    """The examples of the command at `path` (`sync run`), as the help's last part."""
    found = EXAMPLES.get(path)
    return f"examples:\n{found}" if found else None
