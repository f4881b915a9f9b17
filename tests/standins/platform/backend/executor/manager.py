"""Mirrors backend/executor/manager.py at v0.6.44 (dac99694f): the path from a queued graph run to
Block.execute, and how failures become statuses.

- ExecutionManager (:1436): active_graph_runs (:1440); a ThreadPoolExecutor with init_worker (:1478-1484);
  each run is submitted BY GLOBAL NAME: executor.submit(execute_graph, entry, cancel_event, cluster_lock)
  (:1783-1787); a run whose future raised is nacked with requeue=True (:1800-1807).
  Stand-in: runs come from the JSON file STANDIN_PLATFORM_RUNS instead of RabbitMQ; run() returns once
  they are done (and STANDIN_STOP_FILE exists, if set) instead of sleeping forever (:1511-1512).
- execute_graph (:162-169) -> thread-local ExecutionProcessor.on_graph_execution (:708) -> _on_graph_execution
  (:882): queue loop that stops when the cancel event is set (:959-961, :1053-1054); each node is
  run_coroutine_threadsafe(on_node_execution(...), node_execution_loop) (:1031-1043); final status
  TERMINATED if cancelled, else COMPLETED (:1122-1133); in-flight nodes are stopped (:1202-1211).
  Credits, moderation, cluster lock and reviews (:913-1021) need the database: left out.
- on_node_execution (:541) / _on_node_execution (:607-687): ValueError -> FAILED ("Expected failure"),
  other Exception -> FAILED, BaseException (CancelledError) -> TERMINATED; a FAILED node persists an
  "error" output (:683-686).
- execute_node (:175): the kwargs (:240-250), credentials from creds_manager into kwargs (:260-264), then
  node_block.execute(input_data, **extra_exec_kwargs) (:322).
Status changes are appended to STANDIN_PLATFORM_EVENTS (JSON lines), standing for the database
updates and the execution event bus (:592-602, send_async_execution_update).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from backend.data.block import Block, get_block
from backend.data.execution import ExecutionContext, ExecutionStatus
from backend.util.process import AppProcess

_events_lock = threading.Lock()
STANDIN_SMTP_PASSWORD = "s3cret-smtp-password"


def _event(**what: Any) -> None:
    path = os.environ.get("STANDIN_PLATFORM_EVENTS")
    if path:
        with _events_lock, open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(what, default=str) + "\n")


class IntegrationCredentialsManager:  # integrations/creds_manager.py:25 (acquire: decrypted credentials)
    async def acquire(self, user_id: str, credentials_id: str) -> tuple[dict[str, Any], None]:
        return {"id": credentials_id, "username": "agent@example.com", "password": STANDIN_SMTP_PASSWORD}, None


@dataclass
class Node:
    id: str
    block: Block


@dataclass
class NodeExecutionEntry:
    user_id: str
    graph_exec_id: str
    graph_id: str
    graph_version: int
    node_exec_id: str
    node_id: str
    block_id: str
    inputs: dict[str, Any]
    execution_context: ExecutionContext = field(default_factory=ExecutionContext)


@dataclass
class GraphExecutionEntry:
    user_id: str
    graph_id: str
    graph_version: int
    graph_exec_id: str
    nodes: list[dict[str, Any]]
    execution_context: ExecutionContext = field(default_factory=ExecutionContext)


async def execute_node(node: Node, data: NodeExecutionEntry, execution_processor: "ExecutionProcessor",
                       nodes_to_skip: set[str] | None = None) -> Any:  # manager.py:175
    node_block = node.block
    input_data = data.inputs
    extra_exec_kwargs: dict[str, Any] = {  # :240-250
        "graph_id": data.graph_id,
        "graph_version": data.graph_version,
        "node_id": data.node_id,
        "graph_exec_id": data.graph_exec_id,
        "node_exec_id": data.node_exec_id,
        "user_id": data.user_id,
        "execution_context": data.execution_context,
        "execution_processor": execution_processor,
        "nodes_to_skip": nodes_to_skip or set(),
    }
    for field_name in node_block.input_schema.get_credentials_fields():  # :260-264
        credentials, _ = await execution_processor.creds_manager.acquire(data.user_id, input_data[field_name]["id"])
        extra_exec_kwargs[field_name] = credentials
    async for output_name, output_data in node_block.execute(input_data, **extra_exec_kwargs):  # :322
        yield output_name, output_data


class ExecutionProcessor:
    def on_graph_executor_start(self) -> None:  # :690-706
        self.creds_manager = IntegrationCredentialsManager()
        self.node_execution_loop = asyncio.new_event_loop()
        self.node_execution_thread = threading.Thread(target=self.node_execution_loop.run_forever, daemon=True)
        self.node_execution_thread.start()

    async def on_node_execution(self, node_exec: NodeExecutionEntry) -> ExecutionStatus:  # :541
        node = Node(node_exec.node_id, get_block(node_exec.block_id))  # db_client.get_node (:559)
        status = await self._on_node_execution(node, node_exec)
        return status

    async def _on_node_execution(self, node: Node, node_exec: NodeExecutionEntry) -> ExecutionStatus:  # :607
        outputs: list[tuple[str, Any]] = []
        status = ExecutionStatus.RUNNING
        error: BaseException | None = None
        where = {"graph_exec_id": node_exec.graph_exec_id, "node_id": node_exec.node_id, "block": node.block.name}
        try:
            _event(**where, status=ExecutionStatus.RUNNING.value)  # :641-645
            async for output_name, output_data in execute_node(node, node_exec, self):
                outputs.append((output_name, output_data))  # persist_output (:620-637)
            status = ExecutionStatus.COMPLETED  # :658
        except BaseException as e:  # :660-680
            error = e
            if isinstance(e, ValueError):
                status = ExecutionStatus.FAILED  # "Expected failure on node execution"
            elif isinstance(e, Exception):
                status = ExecutionStatus.FAILED  # "Unexpected failure on node execution"
            else:
                status = ExecutionStatus.TERMINATED  # CancelledError or SystemExit
        finally:
            if status == ExecutionStatus.FAILED and error is not None:  # :683-686
                outputs.append(("error", str(error) or type(error).__name__))
            _event(**where, status=status.value, outputs=outputs,
                   error_type=type(error).__name__ if error is not None else None)
        return status

    def on_graph_execution(self, graph_exec: GraphExecutionEntry, cancel: threading.Event,
                           cluster_lock: Any) -> None:  # :708
        status = self._on_graph_execution(graph_exec, cancel)
        _event(graph_exec_id=graph_exec.graph_exec_id, graph_status=status.value)

    def _on_graph_execution(self, graph_exec: GraphExecutionEntry, cancel: threading.Event) -> ExecutionStatus:  # :882
        queue = [
            NodeExecutionEntry(graph_exec.user_id, graph_exec.graph_exec_id, graph_exec.graph_id,
                               graph_exec.graph_version, f"{graph_exec.graph_exec_id}:{n['node_id']}", n["node_id"],
                               n["block_id"], dict(n.get("input") or {}), graph_exec.execution_context)
            for n in graph_exec.nodes
        ]  # pre-populate queue (:941-953)
        running: dict[str, Future[Any]] = {}
        try:
            while queue:  # :959
                if cancel.is_set():
                    break
                node_exec = queue.pop(0)
                running[node_exec.node_id] = asyncio.run_coroutine_threadsafe(  # :1031-1043
                    self.on_node_execution(node_exec), self.node_execution_loop)
            while running and not all(f.done() for f in running.values()):  # poll (:1050-1100)
                if cancel.is_set():
                    break
                time.sleep(0.05)
            return ExecutionStatus.TERMINATED if cancel.is_set() else ExecutionStatus.COMPLETED  # :1122-1133
        finally:  # _cleanup_graph_execution (:1202-1211): stop in-flight nodes, wait for them
            for future in running.values():
                if not future.done():
                    future.cancel()
            for future in running.values():
                try:
                    future.result(timeout=60)
                except BaseException:
                    pass


_tls = threading.local()  # :153


def init_worker() -> None:  # :156-159
    _tls.processor = ExecutionProcessor()
    _tls.processor.on_graph_executor_start()


def execute_graph(graph_exec_entry: GraphExecutionEntry, cancel_event: threading.Event, cluster_lock: Any) -> None:  # :162
    processor: ExecutionProcessor = _tls.processor
    return processor.on_graph_execution(graph_exec_entry, cancel_event, cluster_lock)


def _wait_for(path: str | None) -> None:
    deadline = time.monotonic() + 120
    while path and not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)


class ExecutionManager(AppProcess):  # :1436
    def __init__(self) -> None:
        super().__init__()
        self.pool_size = int(os.environ.get("STANDIN_NUM_GRAPH_WORKERS", "10"))  # settings num_graph_workers
        self.active_graph_runs: dict[str, tuple[Future[Any], threading.Event]] = {}  # :1440
        self._executor: ThreadPoolExecutor | None = None

    @property
    def executor(self) -> ThreadPoolExecutor:  # :1477-1484
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.pool_size, initializer=init_worker)
        return self._executor

    def run(self) -> None:  # :1498 (RabbitMQ consumers stand-in: the runs file)
        path = os.environ.get("STANDIN_PLATFORM_RUNS")
        runs = json.loads(open(path, encoding="utf-8").read()) if path else []
        for run in runs:
            _wait_for(run.get("start_after_file"))
            self._handle_run_message(GraphExecutionEntry(run["user_id"], run["graph_id"], run.get("graph_version", 1),
                                                         run["graph_exec_id"], run["nodes"]))
        for future, _ in list(self.active_graph_runs.values()):
            try:
                future.result(timeout=300)
            except BaseException:
                pass
        _event(all_runs_done=True, pid=os.getpid())
        _wait_for(os.environ.get("STANDIN_STOP_FILE"))

    def _handle_run_message(self, graph_exec_entry: GraphExecutionEntry) -> None:  # :1612
        graph_exec_id = graph_exec_entry.graph_exec_id
        cancel_event = threading.Event()  # :1783-1787
        future = self.executor.submit(execute_graph, graph_exec_entry, cancel_event, None)
        self.active_graph_runs[graph_exec_id] = (future, cancel_event)

        def _on_run_done(f: Future[Any]) -> None:  # :1800-1809
            if f.exception():
                _event(graph_exec_id=graph_exec_id, ack="nack-requeue")  # RabbitMQ redelivers the run
            else:
                _event(graph_exec_id=graph_exec_id, ack="ack")

        future.add_done_callback(_on_run_done)

    def cleanup(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
