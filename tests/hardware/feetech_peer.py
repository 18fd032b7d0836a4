"""A test peer for the SO-100/SO-101 arms: Feetech STS3215 servos on a pseudo-terminal.

It speaks Feetech's serial protocol 0 (the bytes LeRobot's `FeetechMotorsBus` sends through
`scservo_sdk` and pyserial to the arm's USB adapter): PING, READ, WRITE, SYNC_READ, SYNC_WRITE,
with each servo's control table (model number 777, firmware version, ID, position limits,
homing offset, torque enable, goal and present position) in its own memory. With torque on, a
servo moves its shaft toward the goal at up to `speed` ticks/s. Present_Position is the shaft
position minus the homing offset, as on the real servo; both are sign-magnitude encoded.

So LeRobot's own code, from the robot class down to the serial port, runs unmodified: the
lowest layer reachable without an arm. `move_shaft` moves a servo by hand (a leader arm has
its torque off and is moved by the operator).
"""
from __future__ import annotations

import os
import select
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
    """Servos `ids` behind a pty; `port` is the device path to hand to LeRobot."""

    def __init__(self, shafts: dict[int, int], speed: float = 3000.0):
        self.servos = {i: Servo(i, s) for i, s in shafts.items()}
        self.speed = speed
        self.lock = threading.Lock()
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        # the pty by this process's descriptor, not its /dev/pts name: on a machine with more
        # than one devpts mounted on /dev/pts, that name was seen not to resolve (ENOENT) in
        # the client a moment later; /proc/PID/fd/N opens this very pty whatever is mounted
        self.port = f"/proc/{os.getpid()}/fd/{self._slave}"
        self.packets = 0
        self.sync_reads = 0  # answered SYNC_READs: a client polling the arm
        self.goals: list[tuple[float, int, int]] = []  # (time, id, goal) of every goal written
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="feetech-peer")
        self._thread.start()

    # ---- the operator's side ---------------------------------------------------------------
    def seed_calibration(self, id_: int, homing_offset: int, range_min: int, range_max: int):
        """As if `lerobot-calibrate` had written these into the servo's EPROM earlier."""
        with self.lock:
            s = self.servos[id_]
            s.put("homing_offset", _sm_encode(homing_offset, 11))
            s.put("min_limit", range_min)
            s.put("max_limit", range_max)
            s.put("goal", _sm_encode(int(s.shaft) - homing_offset, 15))
            s.update(0.0, 0.0)

    def set_goal(self, id_: int, goal: int) -> None:
        """Leave a goal in the servo's register (as an earlier session would have)."""
        with self.lock:
            self.servos[id_].put("goal", _sm_encode(goal, 15))

    def move_shaft(self, id_: int, ticks: float) -> None:
        with self.lock:
            self.servos[id_].shaft = float(ticks)
            self.servos[id_].update(0.0, 0.0)

    def shaft(self, id_: int) -> float:
        with self.lock:
            return self.servos[id_].shaft

    def torque_enabled(self, id_: int) -> bool:
        with self.lock:
            return bool(self.servos[id_].mem[ADDR["torque_enable"]])

    def close(self) -> None:
        if self._stop.is_set():
            # closed already (a test that pulls the cable, then the fixture): closing the fd
            # numbers twice would close whatever reused them since, e.g. the next peer's master,
            # and its client then fails to open the pty with EIO (seen in CI)
            return
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- the bus -----------------------------------------------------------------------------
    def _serve(self) -> None:
        buf, last = bytearray(), time.monotonic()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.002)
            now = time.monotonic()
            with self.lock:
                for s in self.servos.values():
                    s.update(now - last, self.speed)
            last = now
            if not ready:
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
                self.packets += 1
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
        with self.lock:
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
