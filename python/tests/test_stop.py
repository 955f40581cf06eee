"""Stopping a running run."""

from __future__ import annotations

from pathlib import Path

import liftoff

from conftest import Env, write_job


def test_stop_a_long_running_job(liftoff_env: Env, tmp_path: Path) -> None:
    job = write_job(
        tmp_path / "sleeper",
        """
        import time
        print("started", flush=True)
        time.sleep(120)
        print("not stopped", flush=True)
        """,
    )
    run = liftoff.launch(queue=liftoff_env.queue, path=job, entrypoint="python3 main.py")
    for line in run.logs(follow=True):
        if line.text == "started":
            break  # leaves the stream
    assert run.refresh().state in ("claimed", "running")
    view = run.stop()
    assert view.state in ("stopping", "stopped")
    result = run.wait(timeout=90)
    assert result.state == "stopped", result
    assert "not stopped" not in [ln.text for ln in run.logs(follow=False)]
    try:
        run.stop()
    except liftoff.Conflict as e:
        assert e.status == 409
    else:
        raise AssertionError("stopping an ended run should be a conflict")


def test_wait_times_out_with_a_timeout_error(liftoff_env: Env, tmp_path: Path) -> None:
    job = write_job(tmp_path / "slow", "import time\ntime.sleep(60)\n")
    run = liftoff.launch(queue=liftoff_env.queue, path=job, entrypoint="python3 main.py")
    try:
        try:
            run.wait(timeout=0.5)
        except TimeoutError as e:
            assert isinstance(e, liftoff.RunTimeout) and isinstance(e, liftoff.LiftoffError)
        else:
            raise AssertionError("wait(timeout=0.5) returned")
    finally:
        run.stop()
    assert run.wait(timeout=90).state == "stopped"
