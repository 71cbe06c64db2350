"""The same plain federation in Flower 1.42's simulation engine (Ray), for bench_learning.scale().

Run with the Flower venv's interpreter (flwr[simulation]==1.42.0, ray, torch; no fedledger):
`python bench/flower_learning.py PARTITION.npz ROUNDS`. PARTITION holds the members' data, the initial
weights and the local recipe exported from the fedledger simulation it is compared with, so both
federations train the same logistic regression on the same partition from the same weights: every
member takes ceil(local_epochs * n / batch_size) SGD steps on minibatches of its own samples in a
random order, and FedAvg weights the updates by sample counts. Each ClientApp runs one CPU thread
and Ray gets the machine's cores (one actor per core). The server evaluates the global model on the
test split after every round (Flower's `evaluate_fn`, called before round 1 and after each round);
a round's seconds are the time between two of those calls, without the evaluation itself, and its
`cpu_seconds` the user + system time the process tree (driver, Ray's services, the actors) spent in
between, read from /proc (the actors live through the run, so no round's work leaves the tree early).
Ray's object store is capped at OBJECT_STORE bytes: by default Ray reserves 30% of the machine's memory
in /dev/shm and touches it (6 GB of proportional set size at 300 members on a 23 GB machine), which
says nothing about Flower's own needs; the messages here (one model of 31 KB each) travel inline.
Prints one JSON line.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

OBJECT_STORE = 512 * 2**20
PARTITION = Path(sys.argv[1])
#: the partition's arrays as .npy files, which np.load can memory-map (it ignores mmap_mode for an .npz and
#: reads every array whole: 0.16 s for 48,000 images, paid again in every ClientApp call whose module
#: globals Ray deserialized afresh, which made each call cost more than its training)
ARRAYS = PARTITION.with_suffix("")
ROUNDS = int(sys.argv[2])
_DATA: dict[str, np.ndarray] = {}


def unpack() -> None:
    """Write ARRAYS once from PARTITION (in the driver, before the simulation starts)."""
    if (ARRAYS / "complete").exists():
        return
    ARRAYS.mkdir(exist_ok=True)
    with np.load(PARTITION) as z:
        for k in z.files:
            np.save(ARRAYS / f"{k}.npy", z[k])
    (ARRAYS / "complete").touch()


def mapped() -> dict[str, np.ndarray]:
    """The partition's arrays, memory-mapped: a reader touches only the rows it uses (page cache)."""
    return {path.stem: np.load(path, mmap_mode="r") for path in ARRAYS.glob("*.npy")}


def data() -> dict[str, np.ndarray]:
    """The ClientApp's arrays, mapped once per Ray worker. Only ClientApp calls may fill _DATA: Flower ships
    the ClientApp to the actors with every message, and cloudpickle copies the globals of functions defined
    in __main__ by value, so a _DATA filled in the driver would travel (all 180 MB of it) in every message."""
    if not _DATA:
        _DATA.update(mapped())
    return _DATA


def tree_cpu_seconds() -> float:
    """User + system seconds of this process and its live descendants (/proc/PID/stat fields 14-15)."""
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
            times[int(entry)] = int(fields[11]) + int(fields[12])
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        pid = frontier.pop()
        kids = [child for child, parent in parents.items() if parent == pid and child not in tree]
        tree.update(kids)
        frontier += kids
    return sum(times.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def model(classes: int, features: int) -> torch.nn.Module:
    return torch.nn.Linear(features, classes)


def load(net: torch.nn.Module, flat: np.ndarray) -> None:
    torch.nn.utils.vector_to_parameters(torch.from_numpy(np.asarray(flat, dtype=np.float32)), net.parameters())


def flat_of(net: torch.nn.Module) -> np.ndarray:
    return torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy()


client = ClientApp()


@client.train()
def train(msg: Message, context: Context) -> Message:
    torch.set_num_threads(1)
    d = data()
    member = int(context.node_config["partition-id"])
    lo, n = int(d["offsets"][member]), int(d["counts"][member])
    X = torch.from_numpy(np.array(d["X"][lo : lo + n]))
    y = torch.from_numpy(np.array(d["y"][lo : lo + n])).long()
    classes = int(d["test_y"].max()) + 1
    net = model(classes, X.shape[1])
    load(net, msg.content["arrays"].to_numpy_ndarrays()[0])
    batch = int(d["batch_size"])
    steps = max(1, math.ceil(float(d["local_epochs"]) * n / batch))
    opt = torch.optim.SGD(net.parameters(), lr=float(d["lr"]))
    gen = torch.Generator().manual_seed(int(msg.content["config"]["server-round"]) * 1_000_003 + member)
    order = torch.randperm(n, generator=gen)
    for k in range(steps):
        idx = order[(k * batch + torch.arange(min(batch, n))) % n]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(X[idx]), y[idx]).backward()
        opt.step()
    content = RecordDict({"arrays": ArrayRecord([flat_of(net)]),
                          "metrics": MetricRecord({"num-examples": n})})
    return Message(content=content, reply_to=msg)


server = ServerApp()
RESULT: dict[str, object] = {}


@server.main()
def main(grid: Grid, context: Context) -> None:
    d = mapped()  # not data(): see there
    test_X = torch.from_numpy(np.array(d["test_X"]))
    test_y = torch.from_numpy(np.array(d["test_y"])).long()
    net = model(int(test_y.max()) + 1, test_X.shape[1])
    marks: list[tuple[float, float, float, float, float]] = []  # (called, cpu, cpu after, evaluated, accuracy)

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        called = time.perf_counter()
        cpu = tree_cpu_seconds()
        load(net, arrays.to_numpy_ndarrays()[0])
        with torch.no_grad():
            acc = float((net(test_X).argmax(1) == test_y).float().mean())
        marks.append((called, cpu, tree_cpu_seconds(), time.perf_counter(), acc))
        return MetricRecord({"accuracy": acc})

    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=len(d["counts"]))
    strategy.start(grid=grid, initial_arrays=ArrayRecord([np.asarray(d["initial"], dtype=np.float32)]),
                   num_rounds=ROUNDS, evaluate_fn=evaluate)
    RESULT["rounds"] = [{"round": i, "seconds": marks[i][0] - marks[i - 1][3],
                         "cpu_seconds": marks[i][1] - marks[i - 1][2], "accuracy": marks[i][4]}
                        for i in range(1, len(marks))]


if __name__ == "__main__":
    started = time.perf_counter()
    unpack()
    members = len(mapped()["counts"])
    cores = os.cpu_count() or 1
    run_simulation(server_app=server, client_app=client, num_supernodes=members,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": cores, "include_dashboard": False,
                                                 "object_store_memory": OBJECT_STORE}})
    with open("/proc/self/status") as f:
        driver_peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    print(json.dumps({"members": members, "flower": "1.42.0", "ray_actors": cores,
                      "ray_object_store_mib": OBJECT_STORE / 2**20, "driver_peak_rss_mib": driver_peak / 1024,
                      "flower_wall_seconds": time.perf_counter() - started, **RESULT}))
