"""The process runner every executable shares: rclpy.init, build the nodes, start them, spin them on
the stock rclpy executors until Ctrl-C / SIGTERM, then stop and destroy them.

Invalid parameters or a missing/corrupt model (raised while building the nodes, where the models
load): one FATAL line, exit code 2, no traceback (set PERCEPTION_EDGE_DEBUG=1 for it). A second
Ctrl-C while shutting down ends the process at once, quietly.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, Callable, Sequence

from perception_edge.core.errors import ConfigError, PerceptionError

EXIT_CONFIG = 2


class Managed:
    """Mixed into the package's nodes: what the runner calls besides the executor's spinning.
    start(): begin work (worker threads, camera subscriptions); stop(): end it (idempotent). Loading
    models is the nodes' configure() step, called by each executable's build function. The runner
    starts the nodes in the reverse order of NodeSet.add: consumers before the nodes feeding them."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class NodeSet:
    """The nodes one process runs, and how they spin: on the shared executor, or (own_executor)
    on a SingleThreadedExecutor in a thread of their own."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.own: list[Any] = []

    def add(self, node: Any, own_executor: bool = False) -> Any:
        self.nodes.append(node)
        if own_executor:
            self.own.append(node)
        return node

    def remove(self, node: Any) -> None:
        self.nodes.remove(node)
        if node in self.own:
            self.own.remove(node)

    def append(self, node: Any) -> None:  # build functions of earlier versions took a list
        self.add(node)

    def __iter__(self):
        return iter(self.nodes)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _external_shutdown() -> type:
    try:
        from rclpy.executors import ExternalShutdownException
    except ImportError:  # pragma: no cover - very old rclpy
        return RuntimeError
    return ExternalShutdownException


def _spin(executor) -> None:
    try:
        executor.spin()
    except (_external_shutdown(), KeyboardInterrupt):
        pass
    except Exception as e:
        if executor.context.ok():  # not just the context going away during shutdown
            import rclpy.logging

            rclpy.logging.get_logger("perception_edge").error(
                f"executor thread stopped: {type(e).__name__}: {first_line(e)}")


def _quiet_second_interrupt() -> None:
    """From now on (shutting down) Ctrl-C is ignored: no KeyboardInterrupt half-way through stopping
    the nodes (a traceback, threads left running). Shutting down is bounded (every join has a
    timeout), so the process still ends within seconds. The first Ctrl-C may still be pending for
    Python when this runs (rclpy handles it first), so a handler that exits would also fire for it."""
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: None)
    except ValueError:  # not the main thread (a test harness): leave the handler alone
        pass


def run_main(prog: str, build: Callable[[NodeSet], None], argv: Sequence[str] | None = None,
             multi_threaded: bool = True, num_threads: int = 4) -> int:
    """rclpy.init with argv (--ros-args ...), build(nodes) creates the nodes and loads their models
    (adding each to `nodes` as soon as it exists, for clean-up), then they start and spin on a
    MultiThreadedExecutor (SingleThreadedExecutor with multi_threaded=False); nodes added with
    own_executor=True spin on a SingleThreadedExecutor thread of their own."""
    try:
        return _run(prog, build, argv, multi_threaded, num_threads)
    except KeyboardInterrupt:  # a second Ctrl-C right after the first, before shutdown took over
        return 128 + signal.SIGINT


def _run(prog: str, build: Callable[[NodeSet], None], argv: Sequence[str] | None, multi_threaded: bool,
         num_threads: int) -> int:
    import rclpy
    import rclpy.logging
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    from perception_edge.nodes.allocator import keep_frame_buffers

    external_shutdown = _external_shutdown()
    keep_frame_buffers()  # before the first frame arrives: no page faults per received frame
    debug = os.environ.get("PERCEPTION_EDGE_DEBUG", "") not in ("", "0")
    args = list(sys.argv if argv is None else argv)  # rcl ignores the non-ROS ones (program name)
    try:
        rclpy.init(args=args)
    except Exception as e:  # bad --ros-args, unreadable params file, ...
        if debug:
            raise
        print(f"{prog}: error: cannot start ROS: {first_line(e)}", file=sys.stderr, flush=True)
        return EXIT_CONFIG

    logger = rclpy.logging.get_logger(prog)
    nodes = NodeSet()
    executors: list[Any] = []
    threads: list[threading.Thread] = []
    try:
        try:
            build(nodes)
        except PerceptionError as e:
            if debug:
                raise
            kind = "invalid parameter" if isinstance(e, ConfigError) else "model error"
            logger.fatal(f"{kind}: {first_line(e)}")
            return EXIT_CONFIG
        except (KeyboardInterrupt, external_shutdown):
            return 0
        except Exception as e:
            if debug:
                raise
            logger.fatal(f"start-up failed: {type(e).__name__}: {first_line(e)}")
            return EXIT_CONFIG
        for node in nodes.own:
            ex = SingleThreadedExecutor()
            ex.add_node(node)
            executors.append(ex)
            threads.append(threading.Thread(target=_spin, args=(ex,), name=f"{node.get_name()}-executor",
                                            daemon=True))
        shared = [n for n in nodes if n not in nodes.own]
        executor = None
        if shared:
            executor = (MultiThreadedExecutor(num_threads=max(2, num_threads)) if multi_threaded
                        else SingleThreadedExecutor())
            executors.append(executor)
            for node in shared:
                executor.add_node(node)
        for node in reversed(nodes.nodes):  # the consumers (added last) before the nodes feeding them
            if isinstance(node, Managed):
                node.start()
        for t in threads:
            t.start()
        logger.info(f"running: {', '.join(n.get_name() for n in nodes)}")
        try:
            if executor is not None:
                executor.spin()
            else:
                while any(t.is_alive() for t in threads):
                    threads[0].join(0.2)
        except (KeyboardInterrupt, external_shutdown):
            pass
        return 0
    finally:
        _quiet_second_interrupt()
        _shut_down(nodes, executors, threads)


def _shut_down(nodes: NodeSet, executors: list[Any], threads: list[threading.Thread]) -> None:
    import rclpy

    for node in reversed(nodes.nodes):
        try:
            if isinstance(node, Managed):
                node.stop()
        except Exception:
            pass
    for ex in executors:
        try:
            ex.shutdown(timeout_sec=1.0)
        except Exception:
            pass
    for t in threads:
        t.join(2.0)
    for node in reversed(nodes.nodes):
        try:
            node.destroy_node()
        except Exception:
            pass
    try:
        rclpy.try_shutdown()
    except Exception:
        pass


__all__ = ["EXIT_CONFIG", "Managed", "NodeSet", "run_main"]
