"""A loopback testnet: a managed anvil and one `fedledger node` process per member, under one directory.

    DIR/testnet.json            what the testnet is: its nodes (name, role, address, ports, data), its task
    DIR/task.toml               the task's configuration (FederationConfig), as `fedledger task create` reads it
    DIR/password                the keystores' password (mode 0600; a loopback testnet's convenience: a real
                                member keeps its own, see README "Running a real federation")
    DIR/chain/                  the managed anvil's state, deployment and event index (as `fedledger run` keeps them)
    DIR/nodes/NAME/keystore.json  the member's key, Web3 Secret Storage (scrypt), from the OS CSPRNG
    DIR/nodes/NAME/state/       the node's state directory (its blobs, its TLS identity, its event index)
    DIR/nodes/NAME/state/faults.json  a link fault the node's transport obeys while it runs (node.faults)
    DIR/nodes/NAME/node.log     the node's output; DIR/nodes/NAME/pid while it runs
    DIR/blobs/                  every node's blobs gathered at the end, so `fedledger audit DIR` finds them
    DIR/results.json            the run's results, as `fedledger run` writes them, plus per-node figures

Layout of a testnet of `--members N` (as `fedledger run --clients N` lays out a federation): N trainer nodes
`m01`..`mNN`, `AGGREGATORS` aggregator nodes `agg1`.., one validator node per committee seat `val1`.. and the
task owner's node `owner`, each its own process with its own key, port, data shard and log. A member's shard is
its member number (`--data shard`: its place among its role's registrations), as in `fedledger run`, where the
i-th trainer registered holds shard i: the same numbers, data and sample orders, so the same model.

The supervisor (`Testnet.up`) holds the anvil (it stops with it), starts the nodes, creates the task and
follows the chain until every round is finalized. While the nodes wait on a deadline and nothing moves on
chain for `stall` seconds it moves the dev chain's clock past the deadline (as the simulation does), so a
killed aggregator is replaced in seconds rather than after the task's hour-long windows; `stall=None` keeps
wall-clock time. Process faults (`kill`, `pause`, `resume`, `start`) and link faults (`fault`) can be
applied from any other process while it runs: they act on the pids and files under DIR.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedledger.core.errors import ConfigError, DataError, FedLedgerError
from fedledger.node.faults import FAULT_FILE, FaultPlan, write_plan
from fedledger.node.testnet_results import ACTED, RECEIVED, SEEN, SENT, Timeline, figure, scrape

MANIFEST = "testnet.json"
TASK_CONFIG = "task.toml"
PASSWORD_FILE = "password"
NODES = "nodes"
AGGREGATORS = 3  # as the simulation draws among (fedledger.sim.onchain.AGGREGATORS)
TOKEN = 10**18
ETHER = 10**18
GAS_FUNDS = 100 * ETHER
STAKE_FUNDS = {"trainer": 20 * TOKEN, "aggregator": 400 * TOKEN, "validator": 600 * TOKEN, "owner": 0}
OWNER_FUNDS = 100_000 * TOKEN  # the task's deposit and reward escrow
KDF_N = 2**14  # scrypt cost of the testnet's keystores (see Testnet.create)
JOIN_TIMEOUT = 600.0  # seconds for every node to start and join the task (torch imports on a loaded machine)
ALL_DOWN_GRACE = 10.0  # seconds with no node process alive before `up` gives up
DEADLINE_STEP = 3_601  # seconds the clock moves on a stall: past a TaskSpec window (fedledger.sim.onchain)
ROLE_FLAG = {"trainer": "trainer", "aggregator": "aggregator", "validator": "validator", "owner": "owner"}


class TestnetError(FedLedgerError):
    __test__ = False  # not a pytest class
    exit_code = 9


@dataclass
class NodeSpec:
    name: str
    role: str  # trainer | aggregator | validator | owner
    address: str
    port: int
    metrics_port: int
    data: str = "shard"

    def dir(self, root: Path) -> Path:
        return root / NODES / self.name


@dataclass
class Manifest:
    members: int
    nodes: list[NodeSpec]
    task_id: int | None = None
    chain_url: str = ""
    supervisor_pid: int | None = None
    created: float = field(default_factory=time.time)

    def save(self, root: Path) -> None:
        data = asdict(self)
        tmp = root / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, root / MANIFEST)

    @classmethod
    def load(cls, root: Path) -> Manifest:
        try:
            raw = json.loads((root / MANIFEST).read_text())
            raw["nodes"] = [NodeSpec(**n) for n in raw["nodes"]]
            return cls(**raw)
        except FileNotFoundError:
            raise DataError(f"no testnet at {root} (no {MANIFEST}): start one with `fedledger testnet up --out "
                            f"{root}`") from None
        except (ValueError, TypeError, KeyError) as e:
            raise DataError(f"{root / MANIFEST} is damaged: {e}") from None

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ConfigError(f"no node {name!r} in this testnet; nodes: {', '.join(n.name for n in self.nodes)}")

    def named(self, address: str) -> NodeSpec | None:
        """The node of member `address` (None: not one of this testnet's)."""
        return next((n for n in self.nodes if n.address.lower() == address.lower()), None)


def layout(members: int, committee: int, aggregators: int = AGGREGATORS) -> list[tuple[str, str, str]]:
    """(name, role, --data) of every node of a testnet with `members` trainers."""
    if members < 1 or aggregators < 1:
        raise ConfigError("a testnet needs at least one member (--members N) and one aggregator")
    width = max(2, len(str(members)))
    out = [("owner", "owner", "shard")]
    out += [(f"agg{i + 1}", "aggregator", "shard") for i in range(aggregators)]
    out += [(f"val{i + 1}", "validator", "shard") for i in range(max(committee, 1))]
    out += [(f"m{i + 1:0{width}d}", "trainer", "shard") for i in range(members)]
    return out


def to_toml(values: dict[str, Any]) -> str:
    """A flat-or-nested dict of scalars as TOML (None is left out: the field keeps its default)."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v) if not (isinstance(v, float) and v != v) else "nan"
        if isinstance(v, list | tuple):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return json.dumps(str(v))

    top = [f"{k} = {scalar(v)}" for k, v in values.items() if not isinstance(v, dict) and v is not None]
    parts = ["\n".join(top)]
    for k, v in values.items():
        if isinstance(v, dict):
            body = [f"{kk} = {scalar(vv)}" for kk, vv in v.items() if not isinstance(vv, dict) and vv is not None]
            parts.append(f"[{k}]\n" + "\n".join(body))
    return "\n\n".join(p for p in parts if p) + "\n"


# ---------------------------------------------------------------------------------------------- processes
def _pid_path(root: Path, spec: NodeSpec) -> Path:
    return spec.dir(root) / "pid"


def node_pid(root: Path, spec: NodeSpec) -> int | None:
    """The pid of `spec`'s node process if it is alive and is that node (a reused pid is not)."""
    try:
        pid = int(_pid_path(root, spec).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    if str(spec.dir(root) / "state").encode() not in cmdline:
        return None
    return pid


def process_state(pid: int) -> str:
    """R, S, T (stopped), Z (zombie), ... from /proc/PID/stat."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def _status_bytes(pid: int, key: str) -> int | None:
    """A `kB` figure of /proc/PID/status (VmRSS, VmHWM, ...) in bytes; None if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss_bytes(pid: int) -> int | None:
    return _status_bytes(pid, "VmRSS")


def peak_rss_bytes(pid: int) -> int | None:
    return _status_bytes(pid, "VmHWM")


def fedledger_argv() -> list[str]:
    return [sys.executable, "-m", "fedledger.cli"]


def node_argv(root: Path, m: Manifest, spec: NodeSpec) -> list[str]:
    d = spec.dir(root)
    argv = [*fedledger_argv(), "node", "--chain", m.chain_url, "--keystore", str(d / "keystore.json"),
            "--password-file", str(root / PASSWORD_FILE), "--data", spec.data,
            "--listen", f"127.0.0.1:{spec.port}", "--roles", ROLE_FLAG[spec.role], "--state", str(d / "state"),
            "--metrics", f"127.0.0.1:{spec.metrics_port}",
            "--deployment", str(root / "chain" / "deployment.json")]
    if m.task_id is not None:
        argv += ["--tasks", str(m.task_id)]
    return argv


def start_node(root: Path, m: Manifest, spec: NodeSpec) -> int:
    """Start `spec`'s node (unless it runs); its pid. The process outlives the caller (its own session)."""
    pid = node_pid(root, spec)
    if pid is not None:
        return pid
    d = spec.dir(root)
    (d / "state").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["FEDLEDGER_NODE_NAME"] = spec.name
    with open(d / "node.log", "ab") as log:
        log.write(f"--- start {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode())
        log.flush()
        proc = subprocess.Popen(node_argv(root, m, spec), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=d)
    _pid_path(root, spec).write_text(str(proc.pid))
    _children[proc.pid] = proc
    return proc.pid


_children: dict[int, subprocess.Popen[bytes]] = {}  # nodes this process started (reaped, so none lingers as a zombie)


def signal_node(root: Path, spec: NodeSpec, sig: int) -> int:
    pid = node_pid(root, spec)
    if pid is None:
        raise TestnetError(f"node {spec.name} is not running")
    os.kill(pid, sig)
    if sig == signal.SIGKILL:
        _reap(pid)
    return pid


def _reap(pid: int, timeout: float = 5.0) -> None:
    proc = _children.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end and Path(f"/proc/{pid}").exists() and process_state(pid) != "Z":
        time.sleep(0.05)


def _exited(pid: int) -> bool:
    proc = _children.get(pid)
    if proc is not None:
        return proc.poll() is not None
    return not Path(f"/proc/{pid}").exists() or process_state(pid) == "Z"


def stop_nodes(root: Path, specs: list[NodeSpec], timeout: float = 10.0) -> list[str]:
    """SIGTERM every running node at once (a paused one is continued first so it can exit), SIGKILL those still
    running after `timeout`; the names of the nodes that were running."""
    running = {}
    for spec in specs:
        pid = node_pid(root, spec)
        if pid is None:
            continue
        running[spec.name] = (spec, pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + timeout
    while time.monotonic() < end and not all(_exited(pid) for _, pid in running.values()):
        time.sleep(0.05)
    for spec, pid in running.values():
        if not _exited(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap(pid)
        _pid_path(root, spec).unlink(missing_ok=True)
    return list(running)


# ---------------------------------------------------------------------------------------------- the testnet
class Testnet:
    """The testnet in `root` (see the module docstring)."""

    __test__ = False  # not a pytest class

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @property
    def manifest(self) -> Manifest:
        return Manifest.load(self.root)

    # ------------------------------------------------------------------ creation
    def create(self, cfg: Any, members: int, aggregators: int = AGGREGATORS) -> Manifest:
        """Keystores, password, task config and manifest (once; a second call finds them)."""
        from eth_account import Account

        from fedledger.ledger.anvil import free_port

        self.root.mkdir(parents=True, exist_ok=True)
        if (self.root / MANIFEST).exists():
            m = Manifest.load(self.root)
            if m.members != members:
                raise ConfigError(f"{self.root} is a testnet of {m.members} members, not {members}; "
                                  "choose another --out")
            return m
        pw_path = self.root / PASSWORD_FILE
        fd = os.open(pw_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        password = secrets.token_urlsafe(24)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        cfg = cfg.model_copy(update={"clients": members, "out": str(self.root)})
        (self.root / TASK_CONFIG).write_text(to_toml(cfg.model_dump(mode="json")))
        nodes = []
        used: set[int] = set()

        def port() -> int:
            while (p := free_port()) in used:
                pass
            used.add(p)
            return p

        for name, role, data in layout(members, cfg.ledger.committee, aggregators):
            d = self.root / NODES / name
            d.mkdir(parents=True, exist_ok=True)
            account = Account.from_key(secrets.token_bytes(32))  # the OS CSPRNG
            # scrypt at n = 2^14 rather than eth_account's 2^18: the password file lies next to the keystore, so
            # the KDF's cost buys nothing on a loopback testnet and would cost ~0.75 s per node to start
            keystore = Account.encrypt(account.key, password, iterations=KDF_N)
            kfd = os.open(d / "keystore.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(kfd, "w") as f:
                json.dump(keystore, f)
            nodes.append(NodeSpec(name, role, account.address, port(), port(), data))
        m = Manifest(members=members, nodes=nodes)
        m.save(self.root)
        return m

    def config(self) -> Any:
        from fedledger.core.config import load_config

        return load_config(self.root / TASK_CONFIG, None, base=None)

    # ------------------------------------------------------------------ the run
    def fund(self, ledger: Any, m: Manifest) -> None:
        """Gas and stake for every node, paid by the dev chain's funder (once per address)."""
        w3 = ledger.backend.w3
        funder = ledger.backend.funder
        for spec in m.nodes:
            if w3.eth.get_balance(spec.address) < GAS_FUNDS // 2:
                tx = {"from": funder.address, "to": spec.address, "value": GAS_FUNDS, "gas": 21_000,
                      "gasPrice": w3.eth.gas_price, "nonce": w3.eth.get_transaction_count(funder.address),
                      "chainId": w3.eth.chain_id}
                signed = funder.sign_transaction(tx)
                w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
            want = OWNER_FUNDS if spec.role == "owner" else STAKE_FUNDS[spec.role]
            if want and ledger.utility_balance(spec.address) < want:
                ledger.transfer_utility(spec.address, want)

    def up(self, cfg: Any, members: int, *, aggregators: int = AGGREGATORS, stall: float | None = 5.0,
           keep: bool = False,
           timeout: float | None = None, on_status: Callable[[dict[str, Any]], None] | None = None,
           poll: float = 1.0) -> dict[str, Any]:
        """Run the testnet to the end of its task (see the module docstring); the results payload."""
        from fedledger.ledger import Ledger
        from fedledger.ledger.backends import AnvilBackend

        m = self.create(cfg, members, aggregators)
        backend = AnvilBackend(self.root)
        if not backend.owner:
            backend.close()
            raise TestnetError(f"another process runs the chain of {self.root}: `fedledger testnet down {self.root}`"
                               " first")
        ledger = Ledger.attach(backend, owns_backend=True)
        stopping: list[int] = []

        def on_term(signum: int, frame: Any) -> None:
            stopping.append(signum)

        old = signal.signal(signal.SIGTERM, on_term)
        try:
            m.chain_url = backend.url
            m.supervisor_pid = os.getpid()
            m.save(self.root)
            self.fund(ledger, m)
            backend.persist()
            if m.task_id is None:
                m.task_id = self._create_task(ledger, m.node("owner"))
                m.save(self.root)
                backend.persist()
            self._hand_out_spec(ledger, m)
            joining = [spec for spec in m.nodes if spec.role != "owner"]
            for spec in joining:
                start_node(self.root, m, spec)
            self._wait_joined(ledger, m, joining, JOIN_TIMEOUT)
            start_node(self.root, m, m.node("owner"))  # it opens round 1 once every member is in the pools
            clock = _Clock(ledger, stall)
            watch = _Watch(self.root, m)
            end = None if timeout is None else time.monotonic() + timeout
            all_down_since: float | None = None
            while not stopping:
                status = self.status(ledger)
                watch.see(status)
                if on_status is not None:
                    on_status(status)
                task = status.get("task") or {}
                if task and task["finalized_rounds"] >= task["rounds"]:
                    break
                if end is not None and time.monotonic() > end:
                    raise TestnetError(f"the task did not finish within {timeout:.0f} s: {json.dumps(task)}")
                if any(n["state"] in ("running", "paused") for n in status["nodes"]):
                    all_down_since = None
                elif all_down_since is None:
                    all_down_since = time.monotonic()
                elif time.monotonic() - all_down_since > ALL_DOWN_GRACE:
                    raise TestnetError(f"every node has stopped before the task finished; {self._last_words(m)}")
                clock.tick(status, watch.traffic())
                time.sleep(poll)
            backend.persist()
            if stopping:
                raise TestnetError("stopped before the task finished (testnet down); `testnet up` resumes it")
            watch.last_look(poll)
            payload = self.results(ledger, m, watch.timeline, watch.node_figures(clock.advanced))
            while keep and not stopping:
                time.sleep(poll)
            return payload
        finally:
            stop_nodes(self.root, m.nodes)
            signal.signal(signal.SIGTERM, old)
            m.supervisor_pid, m.chain_url = None, ""  # the chain stops with this process
            with contextlib.suppress(FedLedgerError, OSError):
                m.save(self.root)
            ledger.close()

    def _hand_out_spec(self, ledger: Any, m: Manifest) -> None:
        """Put the task's spec (public, named by its hash on chain) into every node's blob store, as a deployment
        hands members the task they are to join; each node re-hashes it on read."""
        from fedledger.core.blobstore import BlobStore

        assert m.task_id is not None
        spec_hash = ledger.task(m.task_id).spec_hash
        spec = BlobStore(m.node("owner").dir(self.root) / "state" / "blobs").get(spec_hash)
        for node in m.nodes:
            BlobStore(node.dir(self.root) / "state" / "blobs").put(spec)

    def _wait_joined(self, ledger: Any, m: Manifest, nodes: list[NodeSpec], timeout: float) -> None:
        end = time.monotonic() + timeout
        waiting = list(nodes)
        while waiting:
            waiting = [n for n in waiting if not ledger.joined(m.task_id, n.address)]
            if not waiting:
                return
            if time.monotonic() > end:
                raise TestnetError(f"{', '.join(n.name for n in waiting)} did not join task {m.task_id} within "
                                   f"{timeout:.0f} s; {self._last_words(m)}")
            if all(node_pid(self.root, n) is None for n in waiting):
                raise TestnetError(f"{', '.join(n.name for n in waiting)} stopped before joining; "
                                   f"{self._last_words(m)}")
            time.sleep(0.5)

    def _last_words(self, m: Manifest) -> str:
        """The last line a node logged (the first node that logged anything), for an error message."""
        for spec in m.nodes:
            with contextlib.suppress(OSError):
                lines = [x for x in (spec.dir(self.root) / "node.log").read_text(errors="replace").splitlines()
                         if x.strip() and not x.startswith("--- start")]
                if lines:
                    return f"{spec.name}'s log ends: {lines[-1][-300:]}"
        return "no node logged anything"

    def _create_task(self, ledger: Any, owner: NodeSpec) -> int:
        """`fedledger task create` as the owner; the task id, read back from the chain (the owner's newest task)."""
        d = owner.dir(self.root)
        m = self.manifest
        before = ledger.task_count()
        argv = [*fedledger_argv(), "task", "create", "--config", str(self.root / TASK_CONFIG), "--chain",
                m.chain_url, "--keystore", str(d / "keystore.json"), "--state", str(d / "state"), "--password-file",
                str(self.root / PASSWORD_FILE), "--deployment", str(self.root / "chain" / "deployment.json")]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=d)
        (d / "task-create.log").write_text(out.stdout + out.stderr)
        if out.returncode != 0:
            last = ((out.stderr or out.stdout).strip().splitlines() or ["no output"])[-1]
            raise TestnetError(f"`fedledger task create` failed (exit {out.returncode}): {last}")
        mine = [i for i in range(before + 1, ledger.task_count() + 1)
                if ledger.task(i).owner.lower() == owner.address.lower()]
        if not mine:
            raise TestnetError(f"`fedledger task create` made no task owned by {owner.address}: {out.stdout[-200:]!r}")
        return mine[-1]

    # ------------------------------------------------------------------ status and faults
    def status(self, ledger: Any | None = None, *, metrics: bool = False) -> dict[str, Any]:
        """Which nodes run (and in which state), and the task's progress read from the chain; with `metrics`,
        each running node's rounds acted and bytes from its own metrics endpoint."""
        m = self.manifest
        nodes = []
        for spec in m.nodes:
            pid = node_pid(self.root, spec)
            state = process_state(pid) if pid is not None else "-"
            plan_path = spec.dir(self.root) / "state" / FAULT_FILE
            nodes.append({"name": spec.name, "role": spec.role, "address": spec.address, "pid": pid,
                          "state": {"-": "down", "T": "paused", "t": "paused", "Z": "dead"}.get(state, "running"),
                          "rss": rss_bytes(pid) if pid is not None else None,
                          "fault": json.loads(plan_path.read_text()) if plan_path.exists() else None,
                          "listen": f"127.0.0.1:{spec.port}", "metrics": f"127.0.0.1:{spec.metrics_port}"})
            if metrics and state not in ("-", "T", "t", "Z"):
                got = scrape(f"http://127.0.0.1:{spec.metrics_port}/metrics", timeout=0.5)
                nodes[-1]["figures"] = None if got is None else {
                    "rounds_acted": figure(got, ACTED), "bytes_sent": figure(got, SENT),
                    "bytes_received": figure(got, RECEIVED)}
        out: dict[str, Any] = {"dir": str(self.root), "chain": m.chain_url, "task_id": m.task_id,
                               "supervisor": m.supervisor_pid, "nodes": nodes, "task": None}
        if ledger is None:
            with contextlib.suppress(FedLedgerError, OSError), self._attached() as chain:
                out["task"] = task_progress(chain, m.task_id)
        else:
            out["task"] = task_progress(ledger, m.task_id)
        return out

    @contextlib.contextmanager
    def _attached(self) -> Iterator[Any]:
        """The running testnet's chain (never starts one: a stopped testnet has no live progress)."""
        from fedledger.ledger import Ledger
        from fedledger.ledger.anvil import rpc
        from fedledger.ledger.backends import RpcBackend

        m = self.manifest
        if not m.chain_url:
            raise TestnetError("the testnet's chain is not running")
        rpc(m.chain_url, "eth_chainId", timeout=2.0)
        backend = RpcBackend(m.chain_url, run_dir=self.root)
        ledger = Ledger.attach(backend, deploy_if_missing=False, owns_backend=True)
        try:
            yield ledger
        finally:
            ledger.close()

    def kill(self, name: str) -> int:
        return signal_node(self.root, self.manifest.node(name), signal.SIGKILL)

    def pause(self, name: str) -> int:
        return signal_node(self.root, self.manifest.node(name), signal.SIGSTOP)

    def resume(self, name: str) -> int:
        return signal_node(self.root, self.manifest.node(name), signal.SIGCONT)

    def start(self, name: str) -> int:
        m = self.manifest
        if not m.chain_url:
            raise TestnetError("the testnet is down: `fedledger testnet up` starts it (and every node)")
        return start_node(self.root, m, m.node(name))

    def fault(self, name: str, plan: FaultPlan | None) -> Path:
        spec = self.manifest.node(name)
        path = spec.dir(self.root) / "state" / FAULT_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        write_plan(path, plan)
        return path

    def down(self, timeout: float = 30.0) -> list[str]:
        """Stop every node and the supervisor (which stops the chain, state kept); the names stopped."""
        m = self.manifest
        stopped = stop_nodes(self.root, m.nodes)
        pid = m.supervisor_pid
        if pid is not None and Path(f"/proc/{pid}").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            end = time.monotonic() + timeout
            while time.monotonic() < end and Path(f"/proc/{pid}").exists() and process_state(pid) != "Z":
                time.sleep(0.1)
            stopped.append("supervisor")
        return stopped

    # ------------------------------------------------------------------ results
    def gather_blobs(self) -> int:
        """Copy every node's protocol blobs (and names) into DIR/blobs, each re-hashed; the count copied."""
        from fedledger.core.blobstore import BlobStore

        target = BlobStore(self.root / "blobs")
        copied = 0
        for spec in self.manifest.nodes:
            src = spec.dir(self.root) / "state" / "blobs"
            if not src.is_dir():
                continue
            store = BlobStore(src)
            for path in src.glob("[0-9a-f][0-9a-f]/*"):
                if path.name.startswith(".") or len(path.name) != 64:
                    continue
                address = bytes.fromhex(path.name)
                if address in target:
                    continue
                try:
                    target.put(store.get(address))
                    copied += 1
                except FedLedgerError:
                    continue  # a rotted copy: another node's will do, and the audit says if none did
            names = src / "names"
            if names.is_dir():
                for name in names.iterdir():
                    if len(name.name) == 64 and not (target.root / "names" / name.name).exists():
                        with contextlib.suppress(ValueError, OSError):
                            target.name(bytes.fromhex(name.name), bytes.fromhex(name.read_text().strip()))
        return copied

    def results(self, ledger: Any, m: Manifest, timeline: Timeline | None = None,
                nodes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        from fedledger.node.testnet_results import testnet_results  # imports torch: only at the end
        from fedledger.sim.federation import write_results

        self.gather_blobs()
        payload = testnet_results(self.root, self.config(), ledger, m, timeline, nodes)
        write_results(self.root, payload)
        return payload


def task_progress(ledger: Any, task_id: int | None) -> dict[str, Any] | None:
    from fedledger.ledger.types import RoundStatus

    if task_id is None or task_id > ledger.task_count():
        return None
    t = ledger.task(task_id)
    out: dict[str, Any] = {"task": task_id, "rounds": t.rounds, "finalized_rounds": t.finalized_rounds,
                           "block": ledger.block_number, "current_round": None}
    if t.current_round:
        r = ledger.round(task_id, t.current_round)
        out["current_round"] = {"round": t.current_round, "status": RoundStatus(r.status).name.lower(),
                                "attempt": r.attempt, "aggregator": r.aggregator,
                                "submit_deadline": r.submit_deadline, "vote_deadline": r.vote_deadline,
                                "committee": list(r.committee)}
    return out


class _Watch:
    """The supervisor's log of the run: round openings and finalizations, the nodes' counters and memory."""

    def __init__(self, root: Path, m: Manifest) -> None:
        self.root = root
        self.m = m
        self.timeline = Timeline(start=time.monotonic())
        self.peak_rss: dict[str, int] = {}
        self.metrics: dict[str, dict[str, float]] = {}
        self.restarts: dict[str, set[int]] = {}

    def _scrape(self) -> None:
        for spec in self.m.nodes:
            got = scrape(f"http://127.0.0.1:{spec.metrics_port}/metrics", timeout=1.0)
            if got is not None:
                self.metrics[spec.name] = got  # a restarted node's counters restart: the last sample is kept
            pid = node_pid(self.root, spec)
            if pid is not None:
                self.restarts.setdefault(spec.name, set()).add(pid)
                peak = peak_rss_bytes(pid) or 0
                self.peak_rss[spec.name] = max(self.peak_rss.get(spec.name, 0), peak)

    def traffic(self) -> int:
        """Bytes every node has sent so far, from the last samples of their metrics."""
        return sum(figure(x, SENT) for x in self.metrics.values())

    def last_look(self, settle: float) -> None:
        """Scrape once more `settle` seconds after the last round finalized: a node counts a round it acted in only
        once its transaction is mined, so the sample that saw the round finalize can miss the last voter's act."""
        time.sleep(settle)
        self._scrape()

    def see(self, status: dict[str, Any]) -> None:
        now = time.monotonic()
        task = status.get("task") or {}
        cur = task.get("current_round") or {}
        if cur and cur.get("status") not in (None, "finalized"):
            self.timeline.opened.setdefault(int(cur["round"]), now)
        done = int(task.get("finalized_rounds") or 0)
        fresh = [r for r in range(1, done + 1) if r not in self.timeline.finalized]
        self._scrape()
        for r in fresh:
            self.timeline.finalized[r] = now
            self.timeline.sent_at[r] = sum(figure(x, SENT) for x in self.metrics.values())
            self.timeline.received_at[r] = sum(figure(x, RECEIVED) for x in self.metrics.values())
            self.timeline.trainer_sent_at[r] = sum(figure(x, SENT) for name, x in self.metrics.items()
                                                   if self.m.node(name).role == "trainer")

    def node_figures(self, clock_moves: int) -> list[dict[str, Any]]:
        self._scrape()
        return [{"name": s.name, "role": s.role, "address": s.address,
                 "bytes_sent": figure(self.metrics.get(s.name), SENT),
                 "bytes_received": figure(self.metrics.get(s.name), RECEIVED),
                 "rounds_acted": figure(self.metrics.get(s.name), ACTED),
                 "rounds_seen": figure(self.metrics.get(s.name), SEEN),
                 "peak_rss": self.peak_rss.get(s.name), "processes": len(self.restarts.get(s.name, ())),
                 "metrics": self.metrics.get(s.name)} for s in self.m.nodes] + (
            [{"name": "supervisor", "clock_moves": clock_moves}] if clock_moves else [])


class _Clock:
    """Moves a dev chain's clock past the current deadline when nothing moved, on chain or between the nodes, for
    `stall` seconds: an open round's next score commit-reveal deadline first (a jump past both would cost every
    validator its reveal), else past the round's window."""

    def __init__(self, ledger: Any, stall: float | None) -> None:
        self.ledger = ledger
        self.stall = stall
        self.last: tuple[Any, ...] | None = None
        self.since = time.monotonic()
        self.advanced = 0

    def tick(self, status: dict[str, Any], traffic: int = 0) -> None:
        """`traffic`: the nodes' bytes sent so far; while it grows they are at work off chain (training, a SecAgg+
        exchange), which is not a stall whatever the chain shows."""
        if self.stall is None:
            return
        task = status.get("task") or {}
        mark = (task.get("finalized_rounds"), json.dumps(task.get("current_round"), sort_keys=True),
                self.ledger.block_number, traffic)
        now = time.monotonic()
        if mark != self.last:
            self.last, self.since = mark, now
            return
        if now - self.since >= self.stall and task.get("current_round"):
            self.ledger.backend.advance_time(self._step(task))
            self.advanced += 1
            self.since = now

    def _step(self, task: dict[str, Any]) -> int:
        from fedledger.protocol.score_flow import next_scoring_deadline

        cur = task["current_round"]
        if cur["status"] != "open":
            return DEADLINE_STEP
        record = self.ledger.scoring(task["task"], cur["round"], cur["attempt"])
        return next_scoring_deadline(record, self.ledger.timestamp) or DEADLINE_STEP
