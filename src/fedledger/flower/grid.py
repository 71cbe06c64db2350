"""Run a Flower ServerApp and ClientApp in one process, without Ray: `LocalGrid` and `run_local`.

Flower 1.42's own simulation (`flwr.simulation.run_simulation`) runs ClientApps through its Ray backend only.
`LocalGrid` implements Flower's public `flwr.serverapp.Grid` interface by handing each message to the
ClientApp of its destination node, in this process, with one persistent `Context` per node (its
`node_config` holds `partition-id` and `num-partitions`, as Flower's simulation sets them). Messages, replies,
ClientApps, ServerApps and strategies are Flower's own objects, unchanged: the same apps run under `flwr run`
on a SuperLink with SuperNodes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from uuid import uuid4

from flwr.app import Context, Message, RecordDict, UserConfig
from flwr.app.error import Error
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

SERVER_NODE_ID = 0  # Flower's SuperLink node id


class LocalGrid(Grid):
    """Flower's `Grid`, delivering every message to an in-process ClientApp (node ids 1..nodes)."""

    def __init__(self, client_app: ClientApp, nodes: int, *, run_id: int = 1,
                 run_config: UserConfig | None = None) -> None:
        if nodes < 1:
            raise ValueError("a LocalGrid needs at least one node")
        self.client_app = client_app
        self._run = Run.create_empty(run_id)
        self._run.override_config = dict(run_config or {})
        self._node_ids = list(range(1, nodes + 1))
        self._contexts = {
            n: Context(run_id=run_id, node_id=n, node_config={"partition-id": i, "num-partitions": nodes},
                       state=RecordDict(), run_config=dict(run_config or {}))
            for i, n in enumerate(self._node_ids)
        }
        self._pending: dict[str, Message] = {}
        self._replies: dict[str, Message] = {}
        TaskIdentity.run_id = run_id  # the Message constructor reads the running task's identity
        TaskIdentity.node_id = SERVER_NODE_ID
        TaskIdentity.task_id = run_id

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._node_ids)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            if msg.metadata.dst_node_id not in self._contexts:
                raise ValueError(f"no node {msg.metadata.dst_node_id} in this LocalGrid")
            msg.metadata.__dict__["_message_id"] = mid = str(uuid4())
            self._pending[mid] = msg
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        out = []
        for mid in message_ids:
            if mid in self._pending:
                self._deliver(mid, self._pending.pop(mid))
            if mid in self._replies:
                out.append(self._replies.pop(mid))
        return out

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))

    def _deliver(self, mid: str, msg: Message) -> None:
        """Run the destination's ClientApp on `msg`; an exception in it becomes an error reply, as on a SuperNode."""
        msg.metadata.delivered_at = str(time.time())
        context = self._contexts[msg.metadata.dst_node_id]
        try:
            reply = self.client_app(msg, context)
        except Exception as e:  # Flower reports a failing ClientApp as an error reply, not as a server crash
            reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=f"{type(e).__name__}: {e}"),
                            reply_to=msg)
        reply.metadata.__dict__["_message_id"] = str(uuid4())
        self._replies[mid] = reply


def run_local(server_app: ServerApp, client_app: ClientApp, nodes: int, *,
              run_config: UserConfig | None = None) -> None:
    """Run `server_app` against `nodes` copies of `client_app` in this process (Flower's `run_simulation`
    without Ray). The ServerApp's `main(grid, context)` gets a `LocalGrid`."""
    grid = LocalGrid(client_app, nodes, run_config=run_config)
    context = Context(run_id=grid.run.run_id, node_id=SERVER_NODE_ID, node_config={}, state=RecordDict(),
                      run_config=dict(run_config or {}))
    server_app(grid, context)
