"""A test peer for the SO-100/SO-101 arms: Feetech STS3215 servos on a pseudo-terminal.

It speaks Feetech's serial protocol 0 (the bytes LeRobot's `FeetechMotorsBus` sends through
`scservo_sdk` and pyserial to the arm's USB adapter): PING, READ, WRITE, SYNC_READ, SYNC_WRITE,
with each servo's control table (model number 777, firmware version, ID, position limits,
homing offset, torque enable, goal and present position) in its own memory. With torque on, a
servo moves its shaft toward the goal at up to `speed` ticks/s. Present_Position is the shaft
position minus the homing offset, as on the real servo; both are sign-magnitude encoded.

So LeRobot's own code, from the robot class down to the serial port, runs unmodified: the
lowest layer reachable without an arm. `move_shaft` moves a servo by hand (a leader arm has
its torque off and is moved by the operator). The bus runs in a process of its own.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
import tty

ADDR = {"firmware_major": 0, "firmware_minor": 1, "model": 3, "id": 5, "min_limit": 9,
        "max_limit": 11, "homing_offset": 31, "operating_mode": 33, "torque_enable": 40,
        "goal": 42, "lock": 55, "present": 56, "velocity": 58, "moving": 66}
PING, READ, WRITE, SYNC_READ, SYNC_WRITE = 0x01, 0x02, 0x03, 0x82, 0x83
BROADCAST = 0xFE


def _sm_decode(value: int, sign_bit: int) -> int:
    return -(value & ((1 << sign_bit) - 1)) if value & (1 << sign_bit) else value


def _sm_encode(value: int, sign_bit: int) -> int:
    return (1 << sign_bit) | (-value) if value < 0 else value


def _checksum(body) -> int:
    return ~sum(body) & 0xFF


class Servo:
    def __init__(self, id_: int, shaft: int, firmware=(3, 10), model: int = 777):
        self.mem = bytearray(256)
        self.mem[ADDR["firmware_major"]], self.mem[ADDR["firmware_minor"]] = firmware
        self.put("model", model)
        self.mem[ADDR["id"]] = id_
        self.put("min_limit", 0)
        self.put("max_limit", 4095)
        self.shaft = float(shaft)  # the real shaft position, in ticks
        self.put("goal", shaft)
        self.update(0.0, 0.0)

    def get(self, name: str) -> int:
        a = ADDR[name]
        return self.mem[a] | (self.mem[a + 1] << 8)

    def put(self, name: str, value: int) -> None:
        a = ADDR[name]
        self.mem[a], self.mem[a + 1] = value & 0xFF, (value >> 8) & 0xFF

    def update(self, dt: float, speed: float) -> None:
        offset = _sm_decode(self.get("homing_offset"), 11)
        v = 0.0
        if self.mem[ADDR["torque_enable"]]:
            lo, hi = self.get("min_limit"), self.get("max_limit")
            goal = min(max(_sm_decode(self.get("goal"), 15), lo), hi) + offset
            step = max(-speed * dt, min(speed * dt, goal - self.shaft))
            self.shaft += step
            v = step / dt if dt > 0 else 0.0
        self.put("present", _sm_encode(int(round(self.shaft)) - offset, 15))
        self.put("velocity", _sm_encode(int(round(v)), 15))
        self.mem[ADDR["moving"]] = int(abs(v) > 1)


class FeetechBusPeer:
    """Servos `shafts` (id -> shaft ticks) behind a pty; `port` is the device path to hand to
    LeRobot.

    The bus runs in a process of its own (this file as a script), not in a thread of the
    caller: LeRobot pings each servo once with a ~34 ms timeout, and a thread in the pytest
    process missed that deadline whenever the process stalled late in a full suite (CI: 3
    tests failed with "Missing motor IDs"). The methods below ask that process over a pipe."""

    def __init__(self, shafts: dict[int, int], speed: float = 3000.0):
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, __file__, json.dumps({"shafts": shafts, "speed": speed})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.port = self._proc.stdout.readline().strip()
        if not self.port:
            self._proc.kill()
            raise RuntimeError(f"the servo peer did not start (exit code {self._proc.wait()})")

    def _ask(self, op: str, *args):
        with self._lock:
            if self._proc.poll() is not None:
                raise RuntimeError("the servo peer has been closed")
            self._proc.stdin.write(json.dumps([op, *args]) + "\n")
            self._proc.stdin.flush()
            return json.loads(self._proc.stdout.readline())

    # ---- the operator's side ---------------------------------------------------------------
    def seed_calibration(self, id_: int, homing_offset: int, range_min: int, range_max: int):
        """As if `lerobot-calibrate` had written these into the servo's EPROM earlier."""
        self._ask("seed_calibration", id_, homing_offset, range_min, range_max)

    def set_goal(self, id_: int, goal: int) -> None:
        """Leave a goal in the servo's register (as an earlier session would have)."""
        self._ask("set_goal", id_, goal)

    def move_shaft(self, id_: int, ticks: float) -> None:
        self._ask("move_shaft", id_, ticks)

    def shaft(self, id_: int) -> float:
        return self._ask("shaft", id_)

    def torque_enabled(self, id_: int) -> bool:
        return self._ask("torque_enabled", id_)

    @property
    def sync_reads(self) -> int:
        """Answered SYNC_READs: a client polling the arm."""
        return self._ask("sync_reads")

    @property
    def goals(self) -> list[tuple[float, int, int]]:
        """(time, id, goal) of every goal written."""
        return [tuple(g) for g in self._ask("goals")]

    def close(self) -> None:
        """Pull the cable: the peer process ends and the pty with it (closing twice is fine)."""
        with self._lock:
            if self._proc.poll() is None:
                self._proc.stdin.close()  # end of its control pipe: it exits
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Bus:
    """The peer process: the servos, the pty, and the control pipe from FeetechBusPeer."""

    def __init__(self, shafts: dict[int, int], speed: float):
        self.servos = {i: Servo(i, s) for i, s in shafts.items()}
        self.speed = speed
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        # the pty by this process's descriptor, not its /dev/pts name: on a machine with more
        # than one devpts mounted on /dev/pts, that name was seen not to resolve (ENOENT) in
        # the client a moment later; /proc/PID/fd/N opens this very pty whatever is mounted
        self.port = f"/proc/{os.getpid()}/fd/{self._slave}"
        self.sync_reads = 0
        self.goals: list[tuple[float, int, int]] = []

    # ---- the control pipe ----------------------------------------------------------------------
    def seed_calibration(self, id_, homing_offset, range_min, range_max):
        s = self.servos[id_]
        s.put("homing_offset", _sm_encode(homing_offset, 11))
        s.put("min_limit", range_min)
        s.put("max_limit", range_max)
        s.put("goal", _sm_encode(int(s.shaft) - homing_offset, 15))
        s.update(0.0, 0.0)

    def set_goal(self, id_, goal):
        self.servos[id_].put("goal", _sm_encode(goal, 15))

    def move_shaft(self, id_, ticks):
        self.servos[id_].shaft = float(ticks)
        self.servos[id_].update(0.0, 0.0)

    def shaft(self, id_):
        return self.servos[id_].shaft

    def torque_enabled(self, id_):
        return bool(self.servos[id_].mem[ADDR["torque_enable"]])

    def _control(self, line: bytes) -> None:
        """One request [op, *args]: a method above, or a counter read as it is."""
        op, *args = json.loads(line)
        value = getattr(self, op)
        os.write(1, (json.dumps(value(*args) if callable(value) else value) + "\n").encode())

    # ---- the bus -----------------------------------------------------------------------------
    def serve(self) -> None:
        os.write(1, (self.port + "\n").encode())
        buf, control, last = bytearray(), bytearray(), time.monotonic()
        while True:
            ready, _, _ = select.select([self.master, 0], [], [], 0.002)
            now = time.monotonic()
            for s in self.servos.values():
                s.update(now - last, self.speed)
            last = now
            if 0 in ready:
                chunk = os.read(0, 65536)
                if not chunk:
                    return  # the control pipe closed: the caller closed us or died
                control += chunk
                while b"\n" in control:
                    line, _, control = control.partition(b"\n")
                    self._control(line)
            if self.master not in ready:
                continue
            try:
                buf += os.read(self.master, 4096)
            except OSError:
                return
            while True:
                start = buf.find(b"\xff\xff")
                if start < 0 or len(buf) < start + 4:
                    break
                del buf[:start]
                length = buf[3]
                if len(buf) < 4 + length:
                    break
                packet = bytes(buf[:4 + length])
                del buf[:4 + length]
                if _checksum(packet[2:-1]) != packet[-1]:
                    continue  # a real servo ignores a corrupt packet
                reply = self._handle(packet[2], packet[4], packet[5:-1])
                if reply:
                    os.write(self.master, reply)

    def _log_goal(self, servo: Servo, addr: int) -> None:
        if addr == ADDR["goal"]:
            self.goals.append((time.monotonic(), servo.mem[ADDR["id"]],
                               _sm_decode(servo.get("goal"), 15)))

    def _status(self, id_: int, data: bytes = b"") -> bytes:
        body = bytes([id_, len(data) + 2, 0]) + data
        return b"\xff\xff" + body + bytes([_checksum(body)])

    def _handle(self, id_: int, instr: int, params: bytes) -> bytes:
        if instr == PING:
            if id_ == BROADCAST:
                return b"".join(self._status(i) for i in self.servos)
            return self._status(id_) if id_ in self.servos else b""
        if instr == READ and id_ in self.servos:
            addr, n = params[0], params[1]
            return self._status(id_, bytes(self.servos[id_].mem[addr:addr + n]))
        if instr == WRITE:
            targets = self.servos.values() if id_ == BROADCAST else \
                [self.servos[id_]] if id_ in self.servos else []
            for s in targets:
                s.mem[params[0]:params[0] + len(params) - 1] = params[1:]
                self._log_goal(s, params[0])
            return self._status(id_) if id_ in self.servos else b""
        if instr == SYNC_WRITE:
            addr, n = params[0], params[1]
            for k in range(2, len(params), n + 1):
                if params[k] in self.servos:
                    self.servos[params[k]].mem[addr:addr + n] = params[k + 1:k + 1 + n]
                    self._log_goal(self.servos[params[k]], addr)
            return b""
        if instr == SYNC_READ:
            self.sync_reads += 1
            addr, n = params[0], params[1]
            return b"".join(self._status(i, bytes(self.servos[i].mem[addr:addr + n]))
                            for i in params[2:] if i in self.servos)
        return b""


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    _Bus({int(i): s for i, s in spec["shafts"].items()}, spec["speed"]).serve()
