"""Flower adapter: any runner FL strategy as a Flower ``ServerApp`` / ``ClientApp`` pair.

The strategy is *translated*, not re-implemented: both halves run the engine's own round
(:meth:`~runner.federated.module.FederatedModule.run_round`) on a replica built from the same composed
config, and only the engine's local-training entry point
(:meth:`~runner.federated.module.FederatedModule.train_clients`, the seam the DDP split also uses) is
rerouted:

* **server** (the Lightning run, ``fl_backend=flower_sim`` / ``flower_deployment``): plans the round
  (``configure_train``), then, where the engine would train the clients, sends each node a Flower
  ``Message`` (``train``) with the round index, the global parameters and running statistics, and the
  strategy's server-side buffers (prototypes, previous aggregate, …), and waits for the replies; the
  rest of the round — ``client_messages``, the attack, ``aggregate_train``, the server optimizer,
  ``server_update``, evaluation, checkpoints, ``metrics.json`` — runs unchanged.
* **client** (:data:`client_app`): a node hosts the clients ``k`` with ``k % num-partitions ==
  partition-id`` (its ``node_config``; one client per node in the simulation). It loads its clients'
  state from Flower's per-node ``Context.state`` (personal parameters, optimizer moments, BatchNorm
  statistics, momentum — the strategy's :class:`~runner.federated.client_state.ClientState` rows),
  replays the round plan (a function of seed and round only), draws the round's minibatches, builds
  the strategy's local task (``configure_local``: objective, context, optimizer step and its state),
  trains *its own clients only*, and runs the rest of the engine's round except the aggregation
  (``client_messages`` and ``aggregate_buffers`` update its clients' state: momentum, personal
  parameters, masks, personal BatchNorm statistics), then stores the state back in ``Context.state``.
  The reply carries the engine's ``LocalResult`` rows of its clients except the optimizer state
  (``pseudo_grads``, ``final``, ``first_loss``, ``buffers``).

Because both halves use the same seeded plan and the same code on the same data, the final weights
equal the in-process run's (``tests/distributed/test_flower.py`` checks FedAvg and Byrd-NAFL + median).

What stays on the server (documented limits, not hidden): the server also holds the composed data
(the same config), because several strategies' *server* hooks read client data — FedSM's feature
statistics, FedPall's feature uploads, CO-PFL's leave-one-out scoring — and because personalised
evaluation (``val/personal_acc``) runs in the Lightning loop; the server keeps a shadow of the client
state, rebuilt by ``client_messages`` from the uploaded results (never the optimizer moments). Extra
local training a strategy runs inside ``client_messages`` (Ditto's personal model) or at evaluation
(FedAvg-FT fine-tuning) runs on the server's mirror. A resumed run restarts the client-held state.

Flower (``pip install 'runner[flower]'``) is imported only when a Flower backend runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from runner.errors import UserError

from .module import FederatedModule
from .simulator import LocalResult, LocalTask

log = logging.getLogger("runner.flower")

__all__ = [
    "FlowerDeployment",
    "FlowerSimulation",
    "FlowerTransport",
    "LocalNodes",
    "RoundDispatcher",
    "TrainRequest",
    "build_replica",
    "clientapp",  # noqa: F822 - Flower app objects, made by the module __getattr__ on first use
    "clients_of_node",
    "serve_train",
    "serverapp",  # noqa: F822
    "training_rows",
]

FLOWER_HINT = "install Flower with: pip install 'runner[flower]' (or pip install 'flwr[simulation]>=1.20')"
STATE_PREFIX = "runner.client."  # Context.state key of a client's state rows
INITIAL_KEY = "runner.initial"  # Context.state key of the initial global model (personal state init)


def _flwr():
    """The Flower modules the adapter uses (a clear message when the extra is missing)."""
    try:
        import flwr.app as app
        import flwr.clientapp as clientapp
        import flwr.serverapp as serverapp
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise UserError(f"the Flower backends need Flower: {FLOWER_HINT}") from err
    return app, clientapp, serverapp


# ---- pure helpers (no Flower) ---------------------------------------------------------------------
def training_rows(plan, strategy) -> torch.Tensor:
    """Rows of ``plan.clients`` that run local training this round (as in ``run_round``): the honest
    clients, and the Byzantine ones when the attack needs their training (data poisoning)."""
    trains = ~plan.byzantine | strategy.attack.needs_training
    return torch.arange(len(plan.clients), device=plan.clients.device)[trains]


def clients_of_node(partition_id: int, num_partitions: int, num_clients: int) -> list[int]:
    """The runner clients a node hosts: ``k % num_partitions == partition_id``."""
    if not 0 <= int(partition_id) < int(num_partitions):
        raise UserError(
            f"node_config partition-id={partition_id} is outside [0, num-partitions={num_partitions})"
        )
    return [k for k in range(int(num_clients)) if k % int(num_partitions) == int(partition_id)]


def build_replica(cfg: DictConfig) -> FederatedModule:
    """The federated module of ``cfg`` built as ``runner.train.run`` builds it (same seed, same order,
    so the same initial weights), with its clients' data and strategy set up."""
    from hydra.utils import instantiate

    from runner.train import accepted_kwargs, build_networks, data_properties

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = instantiate(cfg.dataset)
    properties = data_properties(datamodule)
    networks = build_networks(cfg, properties)
    module = instantiate(cfg.method, **networks, **accepted_kwargs(cfg.method, properties))
    if not isinstance(module, FederatedModule):
        raise UserError(
            f"fl_backend=flower_* runs federated experiments (method=federated); this config builds "
            f"{type(module).__name__}: use the default fl_backend=inprocess"
        )
    module.datamodule_replica = datamodule
    return module


def _rows_like(value: Any, count: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == count


def _take(value: Any, index: torch.Tensor, count: int) -> Any:
    """Rows ``index`` of a per-row argument (tensor with ``count`` rows, or a LocalTask); else as is."""
    if _rows_like(value, count):
        return value[index.to(value.device)]
    if isinstance(value, LocalTask):
        return LocalTask(
            value.objective,
            {k: v[index.to(v.device)] for k, v in value.context.items()},
            value.step,
            tuple(t[index.to(t.device)] for t in value.state),
        )
    return value


def _fill_result(template: dict[str, Any], index: torch.Tensor, part: LocalResult) -> LocalResult:
    """A LocalResult whose rows ``index`` come from ``part`` and the others from ``template``."""
    out = {}
    for field in dataclasses.fields(LocalResult):
        base, value = template.get(field.name), getattr(part, field.name)
        if isinstance(value, tuple):
            filled = []
            for b, v in zip(base, value, strict=True):
                b = b.clone()
                b[index.to(b.device)] = v.to(b.dtype)
                filled.append(b)
            out[field.name] = tuple(filled)
        elif isinstance(value, torch.Tensor) and base is not None:
            base = base.clone()
            base[index.to(base.device)] = value.to(base.dtype)
            out[field.name] = base
        else:
            out[field.name] = value if base is None else base
    return LocalResult(**out)


@contextlib.contextmanager
def _patched(obj: Any, **methods: Callable) -> Iterator[None]:
    """Instance-level overrides of ``obj``'s methods inside the block (the class is untouched)."""
    for name, fn in methods.items():
        object.__setattr__(obj, name, fn)
    try:
        yield
    finally:
        for name in methods:
            obj.__dict__.pop(name, None)


def server_buffers(strategy) -> dict[str, torch.Tensor]:
    """The strategy's server-side persistent state (its state dict without the client state)."""
    return {k: v.detach().cpu() for k, v in strategy.state_dict().items() if not k.startswith("state.")}


# ---- client half ----------------------------------------------------------------------------------
class ClientReplica:
    """A node's replica of the federated module (one per process and config; see the module docstring)."""

    def __init__(self, cfg: DictConfig, initial: torch.Tensor | None) -> None:
        self.module = build_replica(cfg)
        if initial is not None:  # the server's initial model: personal state starts from it
            self.module.set_global_flat(initial.to(self.module.global_flat().dtype))
        self.module.prepare(self.module.datamodule_replica)
        self.pristine = {
            n: getattr(self.module.strategy.state, n).clone() for n in self.module.strategy.state.names
        }

    # client state <-> Context.state
    def load_state(self, clients: list[int], stored: dict[int, dict[str, torch.Tensor]]) -> None:
        state = self.module.strategy.state
        for name in state.names:
            for k in clients:
                row = stored.get(k, {}).get(name)
                value = self.pristine[name][k] if row is None else row
                state.set(name, torch.tensor([k]), value.unsqueeze(0))

    def dump_state(self, clients: list[int]) -> dict[int, dict[str, torch.Tensor]]:
        state = self.module.strategy.state
        return {k: {n: getattr(state, n)[k].detach().cpu().clone() for n in state.names} for k in clients}

    def train(
        self,
        round_index: int,
        clients: list[int],
        global_flat: torch.Tensor,
        global_buffers: torch.Tensor | None,
        buffers: dict[str, torch.Tensor],
    ) -> tuple[list[int], LocalResult]:
        """Run the engine's round for ``clients`` (a subset of the round's trainers); returns the
        clients in result-row order and their ``LocalResult`` rows."""
        module, strategy = self.module, self.module.strategy
        strategy.load_state_dict({**strategy.state_dict(), **buffers}, strict=True)
        module.set_global_flat(global_flat.to(module.global_flat().dtype))
        if global_buffers is not None and hasattr(module, "set_global_buffers"):
            module.set_global_buffers(global_buffers)
        captured: dict[str, Any] = {}
        configure_train = strategy.configure_train
        engine_train = module.train_clients
        wanted = torch.tensor(sorted(clients), dtype=torch.long)

        def record_plan(r, g):
            captured["plan"] = plan = configure_train(r, g)
            return plan

        def train_own(start, xs, ys, task=None, *args, **kwargs):
            plan = captured["plan"]
            rows = training_rows(plan, strategy)
            count = start.shape[0]
            if len(rows) != count:
                raise RuntimeError(f"flower client: {count} training rows, the plan has {len(rows)}")
            ids = plan.clients[rows].cpu()
            mine = torch.nonzero(torch.isin(ids, wanted)).flatten()
            part = engine_train(
                _take(start, mine, count),
                _take(xs, mine, count),
                _take(ys, mine, count),
                _take(task, mine, count),
                *(_take(a, mine, count) for a in args),
                **{k: _take(v, mine, count) for k, v in kwargs.items()},
            )
            captured.setdefault("result", (ids[mine].tolist(), part))
            template: dict[str, Any] = {
                "pseudo_grads": torch.zeros_like(start),
                "final": start.detach().clone(),
                "first_loss": torch.zeros(count, dtype=start.dtype, device=start.device),
                "state": tuple(task.state) if task is not None else (),
                "buffers": kwargs.get("buffers"),
            }
            if part.state and not template["state"]:
                template["state"] = tuple(
                    torch.zeros((count, *t.shape[1:]), dtype=t.dtype, device=t.device) for t in part.state
                )
            if getattr(part, "buffers", None) is not None and template["buffers"] is None:
                b = part.buffers
                template["buffers"] = torch.zeros((count, *b.shape[1:]), dtype=b.dtype, device=b.device)
            return _fill_result(template, mine, part)

        def skip_aggregation(plan, messages, weights):  # the server aggregates; the node only needs
            return torch.zeros_like(messages[0])  # what follows it (client-held running statistics)

        with _patched(strategy, configure_train=record_plan, aggregate_train=skip_aggregation):
            with _patched(module, train_clients=train_own):
                module.run_round(round_index)
        if "result" not in captured:
            raise RuntimeError(f"flower client: round {round_index} trained none of clients {clients}")
        return captured["result"]


_REPLICAS: dict[str, ClientReplica] = {}


def _replica(cfg_yaml: str, node_overrides: str, initial: torch.Tensor | None) -> ClientReplica:
    key = hashlib.sha256((cfg_yaml + "\n#" + node_overrides).encode()).hexdigest()
    if key not in _REPLICAS:
        cfg = OmegaConf.create(cfg_yaml)
        if node_overrides.strip():
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(node_overrides.split()))
        _REPLICAS.clear()  # one experiment per process at a time
        _REPLICAS[key] = ClientReplica(cfg, initial)
    return _REPLICAS[key]


def _to_record(tensors: dict[str, torch.Tensor]):
    app, _, _ = _flwr()
    return app.ArrayRecord(
        {k: app.Array.from_torch_tensor(v.detach().cpu().contiguous()) for k, v in tensors.items()}
    )


def _from_record(record) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(array.numpy().copy()) for k, array in record.items()}


def _node_partition(context) -> tuple[int, int]:
    config = context.node_config
    if "partition-id" not in config or "num-partitions" not in config:
        raise UserError(
            "a runner SuperNode needs --node-config 'partition-id=<i> num-partitions=<n>' (which runner "
            "clients it hosts: k % n == i)"
        )
    return int(config["partition-id"]), int(config["num-partitions"])


def _client_query(message, context):
    """Discovery: the node's partition, and the server's initial model kept in the node's state."""
    app, _, _ = _flwr()
    if "initial" in message.content:
        context.state[INITIAL_KEY] = message.content["initial"]
    pid, parts = _node_partition(context)
    return app.Message(
        app.RecordDict({"partition": app.ConfigRecord({"partition-id": pid, "num-partitions": parts})}),
        reply_to=message,
    )


@dataclasses.dataclass
class TrainRequest:
    """What the server sends a node for one round (a Flower ``train`` Message's content)."""

    round_index: int
    clients: list[int]
    config_yaml: str
    model: dict[str, torch.Tensor]  # "flat" (global parameters), optional "buffers" (running statistics)
    server: dict[str, torch.Tensor]  # the strategy's server-side buffers
    torch_threads: int = 1


def serve_train(
    request: TrainRequest,
    store: dict[int, dict[str, torch.Tensor]],
    initial: torch.Tensor | None,
    node_overrides: str = "",
) -> tuple[list[int], dict[str, torch.Tensor]]:
    """A node's side of one round: its clients' state from ``store`` (the node's persistent state),
    local training through the engine's round, their new state back into ``store``; returns the
    clients in row order and their result rows."""
    torch.set_num_threads(max(1, int(request.torch_threads)))
    replica = _replica(request.config_yaml, node_overrides, initial)
    replica.load_state(request.clients, {k: store[k] for k in request.clients if k in store})
    order, part = replica.train(
        request.round_index,
        request.clients,
        request.model["flat"],
        request.model.get("buffers"),
        request.server,
    )
    store.update(replica.dump_state(order))
    result = {"pseudo_grads": part.pseudo_grads, "final": part.final, "first_loss": part.first_loss}
    if getattr(part, "buffers", None) is not None:
        result["buffers"] = part.buffers
    return order, result


def _client_train(message, context):
    """Flower ``train`` handler: :func:`serve_train` with the node's ``Context.state`` as the store."""
    app, _, _ = _flwr()
    config = message.content["config"]
    request = TrainRequest(
        round_index=int(config["round"]),
        clients=[int(k) for k in config["clients"]],
        config_yaml=str(config["config"]),
        model=_from_record(message.content["global"]),
        server=_from_record(message.content["server"]),
        torch_threads=int(config.get("torch-threads", 1)),
    )
    initial = _from_record(context.state[INITIAL_KEY])["flat"] if INITIAL_KEY in context.state else None
    store = {
        k: _from_record(context.state[f"{STATE_PREFIX}{k}"])
        for k in request.clients
        if f"{STATE_PREFIX}{k}" in context.state
    }
    order, result = serve_train(request, store, initial, str(context.node_config.get("overrides", "")))
    for k in order:
        context.state[f"{STATE_PREFIX}{k}"] = _to_record(store[k])
    return app.Message(
        app.RecordDict({"result": _to_record(result), "clients": app.ConfigRecord({"clients": order})}),
        reply_to=message,
    )


# ---- server half ----------------------------------------------------------------------------------
class GridSession:
    """Runs functions of a Flower ``Grid``: inline (a deployment's ServerApp thread owns the grid) or
    through a queue served by the simulation's ServerApp thread (:class:`SimulationSession`)."""

    def __init__(self, grid=None) -> None:
        self.grid = grid

    def call(self, fn: Callable[[Any], Any]) -> Any:
        return fn(self.grid)

    def close(self) -> None:
        pass


class SimulationSession(GridSession):
    """Flower's simulation engine in a background thread; its ServerApp serves :meth:`call`s."""

    def __init__(self, client_app, num_supernodes: int, backend_config: dict[str, Any]) -> None:
        super().__init__()
        _, _, serverapp = _flwr()
        from flwr.simulation import run_simulation

        self.requests: queue.Queue = queue.Queue()
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        server_app = serverapp.ServerApp()

        @server_app.main()
        def main(grid, context) -> None:
            self.grid = grid
            self.ready.set()
            while (item := self.requests.get()) is not None:
                fn, future = item
                try:
                    future.set_result(fn(grid))
                except BaseException as err:  # handed back to the calling thread
                    future.set_exception(err)

        def simulate() -> None:
            try:
                run_simulation(
                    server_app=server_app,
                    client_app=client_app,
                    num_supernodes=num_supernodes,
                    backend_config=backend_config,
                )
            except BaseException as err:  # reported by call()
                self.failure = err
            finally:
                self.ready.set()

        self.thread = threading.Thread(target=simulate, name="flower-simulation", daemon=True)
        self.thread.start()

    def call(self, fn):
        self.ready.wait()
        if self.failure is not None or not self.thread.is_alive():
            raise RuntimeError(f"Flower's simulation engine stopped: {self.failure!r}")
        future: Future = Future()
        self.requests.put((fn, future))
        while True:
            try:
                return future.result(timeout=1.0)
            except TimeoutError:
                if not self.thread.is_alive():
                    raise RuntimeError(f"Flower's simulation engine stopped: {self.failure!r}") from None

    def close(self) -> None:
        self.requests.put(None)
        self.thread.join(timeout=120)


class NodeTransport:
    """How the server half reaches the nodes: ``nodes()``, ``query`` (partition of each node, after
    handing it the initial model), ``train`` (one round's :class:`TrainRequest` per node → ``(client
    ids, result rows)`` per node)."""

    def nodes(self) -> list[int]:
        raise NotImplementedError

    def query(self, nodes: list[int], initial: torch.Tensor) -> dict[int, tuple[int, int]]:
        raise NotImplementedError

    def train(
        self, requests: dict[int, TrainRequest]
    ) -> dict[int, tuple[list[int], dict[str, torch.Tensor]]]:
        raise NotImplementedError


class FlowerTransport(NodeTransport):
    """:class:`NodeTransport` over a Flower grid: ``query`` and ``train`` Messages."""

    def __init__(self, session: GridSession, timeout: float | None) -> None:
        self.session = session
        self.timeout = timeout

    def nodes(self) -> list[int]:
        return self.session.call(lambda grid: sorted(grid.get_node_ids()))

    @staticmethod
    def _check(reply) -> None:
        if reply.has_error():
            raise RuntimeError(
                f"Flower node {reply.metadata.src_node_id} failed: {reply.error.reason} (code {reply.error.code})"
            )

    def _exchange(self, messages: list) -> list:
        replies = self.session.call(lambda grid: list(grid.send_and_receive(messages, timeout=self.timeout)))
        for reply in replies:
            self._check(reply)
        return replies

    def query(self, nodes, initial):
        app, _, _ = _flwr()
        record = _to_record({"flat": initial})
        replies = self._exchange(
            [
                app.Message(app.RecordDict({"initial": record}), dst_node_id=n, message_type="query")
                for n in nodes
            ]
        )
        out = {}
        for reply in replies:
            info = reply.content["partition"]
            out[reply.metadata.src_node_id] = (int(info["partition-id"]), int(info["num-partitions"]))
        return out

    def train(self, requests):
        app, _, _ = _flwr()
        messages = []
        for node, request in requests.items():
            config = app.ConfigRecord(
                {
                    "round": int(request.round_index),
                    "clients": list(request.clients),
                    "config": request.config_yaml,
                    "torch-threads": int(request.torch_threads),
                }
            )
            content = app.RecordDict(
                {"config": config, "global": _to_record(request.model), "server": _to_record(request.server)}
            )
            messages.append(app.Message(content, dst_node_id=node, message_type="train"))
        return {
            reply.metadata.src_node_id: (
                [int(k) for k in reply.content["clients"]["clients"]],
                _from_record(reply.content["result"]),
            )
            for reply in self._exchange(messages)
        }


class LocalNodes(NodeTransport):
    """In-process nodes (no Flower): each with its own state store, served by :func:`serve_train`.
    Used by the tests to check the translation without starting Flower."""

    def __init__(self, num_nodes: int) -> None:
        self.num = int(num_nodes)
        self.stores: dict[int, dict[int, dict[str, torch.Tensor]]] = {n: {} for n in range(self.num)}
        self.initial: torch.Tensor | None = None

    def nodes(self):
        return list(range(self.num))

    def query(self, nodes, initial):
        self.initial = initial.detach().cpu().clone()
        return {n: (n, self.num) for n in nodes}

    def train(self, requests):
        return {n: serve_train(r, self.stores[n], self.initial) for n, r in requests.items()}


class RoundDispatcher:
    """Server half: node discovery, then each round's local training on the nodes (module docstring)."""

    def __init__(
        self,
        transport: NodeTransport,
        module: FederatedModule,
        config_yaml: str,
        expected_nodes: int | None,
        node_wait: float = 120.0,
        torch_threads: int = 1,
    ) -> None:
        self.transport = transport
        self.module = module
        self.config_yaml = config_yaml
        self.expected_nodes = None if expected_nodes is None else int(expected_nodes)
        self.node_wait = float(node_wait)
        self.torch_threads = int(torch_threads)
        self.client_node: dict[int, int] = {}
        self.seconds_remote = 0.0
        self._plan = None
        self._in_round = False
        self._dispatched = False
        self._warned = False
        self._stack: contextlib.ExitStack | None = None

    def discover(self) -> None:
        """Wait for the nodes, give them the initial model, learn which clients each hosts: until
        ``expected_nodes`` nodes are connected (None: until the nodes cover every client)."""
        num_clients = self.module.client_data.num_clients
        deadline = time.monotonic() + self.node_wait
        initial = self.module.global_flat().cpu()
        found: list[int] = []
        missing: list[int] = list(range(num_clients))
        while True:
            found = self.transport.nodes()
            if found and len(found) >= (self.expected_nodes or 1):
                self.client_node = {}
                for node, (pid, parts) in self.transport.query(found, initial).items():
                    for k in clients_of_node(pid, parts, num_clients):
                        if k in self.client_node:
                            raise UserError(
                                f"Flower: runner client {k} is hosted by two SuperNodes; give each node a "
                                "distinct partition-id with the same num-partitions"
                            )
                        self.client_node[k] = node
                missing = sorted(set(range(num_clients)) - set(self.client_node))
                if not missing:
                    break
                if self.expected_nodes and len(found) >= self.expected_nodes:
                    break
            if time.monotonic() > deadline:
                break
            time.sleep(1.0)
        if missing:
            raise UserError(
                f"Flower: within {self.node_wait:.0f} s, {len(found)} SuperNode(s) connected and runner "
                f"clients {missing[:10]} have none (node_config partition-id / num-partitions must cover all "
                f"{num_clients} clients; fl_backend.node_wait, fl_backend.num_supernodes)"
            )
        log.info("Flower: %d SuperNodes host %d clients", len(set(self.client_node.values())), num_clients)

    def attach(self) -> None:
        """Reroute the module's round-time local training to the nodes (instance-level; undone by
        :meth:`detach`)."""
        module, strategy = self.module, self.module.strategy
        engine_round, engine_train = module.run_round, module.train_clients
        configure_train = strategy.configure_train

        def record_plan(r, g):
            self._plan = plan = configure_train(r, g)
            return plan

        def run_round(round_index, *args, **kwargs):
            self._in_round, self._dispatched = True, False
            try:
                return engine_round(round_index, *args, **kwargs)
            finally:
                self._in_round = False

        def train_clients(start, xs, ys, task=None, *args, **kwargs):
            if not self._in_round or self._dispatched:
                if not self._warned:
                    log.warning(
                        "Flower: %s trains clients outside the round's local training; that runs on the "
                        "server's data mirror",
                        type(strategy).__name__,
                    )
                    self._warned = True
                return engine_train(start, xs, ys, task, *args, **kwargs)
            self._dispatched = True
            return self.train_remote(start)

        self._stack = contextlib.ExitStack()
        self._stack.enter_context(_patched(strategy, configure_train=record_plan))
        self._stack.enter_context(_patched(module, run_round=run_round, train_clients=train_clients))

    def detach(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def train_remote(self, start: torch.Tensor) -> LocalResult:
        """The round's local training on the nodes; result rows in the engine's order."""
        module, plan = self.module, self._plan
        ids = plan.clients[training_rows(plan, module.strategy)].cpu().tolist()
        model = {"flat": module.global_flat().cpu()}
        if getattr(getattr(module, "buffer_layout", None), "dim", 0):
            model["buffers"] = module.global_buffers().cpu()
        server = server_buffers(module.strategy)
        hosted: dict[int, list[int]] = {}
        for k in ids:
            hosted.setdefault(self.client_node[k], []).append(k)
        requests = {
            node: TrainRequest(
                int(plan.round_index), clients, self.config_yaml, model, server, self.torch_threads
            )
            for node, clients in hosted.items()
        }
        started = time.perf_counter()
        replies = self.transport.train(requests)
        self.seconds_remote += time.perf_counter() - started
        got: dict[int, dict[str, torch.Tensor]] = {}
        for order, tensors in replies.values():
            for i, k in enumerate(order):
                got[k] = {name: t[i] for name, t in tensors.items()}
        lost = [k for k in ids if k not in got]
        if lost:
            raise RuntimeError(
                f"Flower: round {plan.round_index}: no reply for clients {lost[:10]} (fl_backend.round_timeout)"
            )

        def rows(name: str) -> torch.Tensor:
            return torch.stack([got[k][name] for k in ids]).to(start.device)

        extra = {"buffers": rows("buffers")} if "buffers" in got[ids[0]] else {}
        return LocalResult(
            pseudo_grads=rows("pseudo_grads").to(start.dtype),
            final=rows("final").to(start.dtype),
            first_loss=rows("first_loss").to(start.dtype),
            **extra,
        )


class FlowerBackend(L.Callback):
    """Hands each round's local training to Flower nodes (module docstring). Subclasses open the
    Flower session (:class:`FlowerSimulation`, :class:`FlowerDeployment`).

    Args:
        num_supernodes: nodes to wait for (simulation: nodes to start); null = one per runner client.
        round_timeout: seconds to wait for a round's replies (null: no limit).
        node_wait: seconds to wait for the SuperNodes to connect.
        torch_threads: torch threads of each ClientApp.
    """

    def __init__(
        self,
        num_supernodes: int | None = None,
        round_timeout: float | None = 600.0,
        node_wait: float = 120.0,
        torch_threads: int = 1,
    ) -> None:
        super().__init__()
        self.num_supernodes = num_supernodes
        self.round_timeout = round_timeout
        self.node_wait = node_wait
        self.torch_threads = torch_threads
        self.dispatcher: RoundDispatcher | None = None
        self.session: GridSession | None = None
        self.timings: dict[str, float] = {}

    def open_session(self, num_nodes: int | None) -> GridSession:
        raise NotImplementedError

    def expected_nodes(self, num_clients: int) -> int | None:
        """Nodes to wait for (None: until the connected nodes host every client)."""
        return None if self.num_supernodes is None else int(self.num_supernodes)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _flwr()
        if not isinstance(pl_module, FederatedModule):
            raise UserError(
                f"fl_backend=flower_* runs federated experiments (method=federated), not {type(pl_module).__name__}"
            )
        if trainer.world_size > 1:
            raise UserError(
                "fl_backend=flower_* runs the server in one process: use trainer=cpu or trainer=gpu"
            )
        config_file = Path(trainer.default_root_dir) / "config_resolved.yaml"
        if not config_file.is_file():
            raise UserError(
                f"Flower: the composed config {config_file} is missing (written by runner.train.run)"
            )
        started = time.perf_counter()
        num_clients = pl_module.client_data.num_clients
        nodes = self.expected_nodes(num_clients)
        self.session = self.open_session(nodes)
        self.dispatcher = RoundDispatcher(
            FlowerTransport(self.session, self.round_timeout),
            pl_module,
            config_file.read_text(),
            nodes,
            self.node_wait,
            self.torch_threads,
        )
        self.dispatcher.discover()
        self.dispatcher.attach()
        self.timings["start_s"] = time.perf_counter() - started

    def _close(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.detach()
            self.timings["in_flower_s"] = self.dispatcher.seconds_remote
        if self.session is not None:
            started = time.perf_counter()
            self.session.close()
            self.timings["stop_s"] = time.perf_counter() - started
        self.dispatcher = self.session = None

    def on_fit_end(self, trainer, pl_module) -> None:
        self._close()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._close()


class FlowerSimulation(FlowerBackend):
    """``fl_backend=flower_sim``: Flower's simulation engine (Ray) with ``num_supernodes`` virtual
    nodes (default: one per client), started at fit start and stopped at fit end.

    Args:
        client_cpus / client_gpus: Ray resources of one ClientApp actor.
        ray_cpus: CPUs Ray may use (null: all).
        **backend: :class:`FlowerBackend` arguments.
    """

    def __init__(
        self,
        client_cpus: float = 1.0,
        client_gpus: float = 0.0,
        ray_cpus: int | None = None,
        **backend: Any,
    ) -> None:
        super().__init__(**backend)
        self.backend_config: dict[str, Any] = {
            "client_resources": {"num_cpus": float(client_cpus), "num_gpus": float(client_gpus)},
            "init_args": {"include_dashboard": False, **({"num_cpus": int(ray_cpus)} if ray_cpus else {})},
        }

    def expected_nodes(self, num_clients: int) -> int:
        return int(self.num_supernodes or num_clients)

    def open_session(self, num_nodes: int | None) -> GridSession:
        return SimulationSession(client_app(), int(num_nodes), self.backend_config)


_DEPLOYMENT_GRID: Any = None


class FlowerDeployment(FlowerBackend):
    """``fl_backend=flower_deployment``: the grid of the ServerApp this run executes in (set by
    :data:`server_app`; ``python -m runner.flower run`` starts it on a SuperLink)."""

    def open_session(self, num_nodes: int | None) -> GridSession:
        if _DEPLOYMENT_GRID is None:
            raise UserError(
                "fl_backend=flower_deployment runs inside a Flower ServerApp: start it with "
                "`python -m runner.flower run ...` (or use fl_backend=flower_sim)"
            )
        return GridSession(_DEPLOYMENT_GRID)


# ---- the Flower apps ------------------------------------------------------------------------------
_APPS: dict[str, Any] = {}


def client_app():
    """The runner ``ClientApp`` (``query``: discovery; ``train``: one round of local training)."""
    if "client" not in _APPS:
        _, clientapp, _ = _flwr()
        app = clientapp.ClientApp()
        app.query()(_client_query)
        app.train()(_client_train)
        _APPS["client"] = app
    return _APPS["client"]


def _server_main(grid, context) -> None:
    """The deployment ServerApp: compose the run config from the run config's ``overrides`` and run
    it (``runner.train.run``) with ``fl_backend=flower_deployment`` over this grid (run config keys
    ``root-dir``, ``data-dir``, ``output-dir`` place it; ``python -m runner.flower run`` sets them)."""
    import shlex

    from runner.compose import compose_run_config
    from runner.train import run

    global _DEPLOYMENT_GRID
    run_config = context.run_config
    root = Path(str(run_config.get("root-dir") or Path.cwd()))
    overrides = shlex.split(str(run_config.get("overrides", "")))
    if not any(o.startswith("fl_backend=") for o in overrides):
        overrides.append("fl_backend=flower_deployment")
    output = str(run_config.get("output-dir") or "") or str(
        root / "logs" / "flower" / time.strftime("%Y-%m-%d_%H-%M-%S")
    )
    data_dir = str(run_config.get("data-dir") or "") or None
    cfg = compose_run_config(overrides, output_dir=output, root_dir=root, data_dir=data_dir)
    _DEPLOYMENT_GRID = grid
    try:
        run(cfg)
    finally:
        _DEPLOYMENT_GRID = None


def server_app():
    """The runner ``ServerApp`` of a deployment (:func:`_server_main`)."""
    if "server" not in _APPS:
        _, _, serverapp = _flwr()
        app = serverapp.ServerApp()
        app.main()(_server_main)
        _APPS["server"] = app
    return _APPS["server"]


def __getattr__(name: str):
    """``runner.federated.flower:client_app`` / ``:server_app`` as Flower app references."""
    if name == "clientapp":
        return client_app()
    if name == "serverapp":
        return server_app()
    raise AttributeError(name)
