#!/usr/bin/env bash
# Idempotent: the ROS 2 side of the project, for the ROS 2 node, HAL backend and their tests.
#
#   .venv      + cyclonedds (a ROS 2 wire-format DDS peer, no rclpy) and rosbags (bag I/O)
#   .venv-ros2   rclpy from PyPI: the ROS 2 Kilted wheels (ros-rclpy 9.1.2, rmw Fast DDS) and
#                the message packages robot_rl uses, LAYERED over .venv (a .pth adds .venv's
#                site-packages after its own), so robot_rl, torch and MuJoCo are not installed
#                twice. Never install the ros-* wheels into .venv: they ship a bootstrapper
#                .pth that re-executes every Python process started from that venv.
#
#   bash scripts/setup_ros2.sh          (after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

if [ ! -x .venv/bin/python ]; then
  echo "error: .venv missing: run 'bash scripts/setup.sh learn,dev' first" >&2
  exit 1
fi

MAIN_PKGS="cyclonedds==11.0.1 rosbags==0.11.9"
ROS_PKGS="ros-rclpy==9.1.2 ros-rmw-fastrtps-cpp==9.3.3 ros-rcl-interfaces==2.3.0 \
ros-builtin-interfaces==2.3.0 ros-std-msgs==5.5.1 ros-std-srvs==5.5.1 \
ros-geometry-msgs==5.5.1 ros-sensor-msgs==5.5.1"

pipq() { "$@" 2>&1 | { grep -v "is ignored" || true; }; }  # pip's status survives (pipefail)

# 1. the main venv: DDS peer + bag library (pure wheels)
if ! .venv/bin/python -c "import cyclonedds, rosbags" >/dev/null 2>&1; then
  echo "installing into .venv: $MAIN_PKGS"
  pipq .venv/bin/python -m pip install -q $MAIN_PKGS
fi

# 2. the ROS 2 venv, same interpreter version as .venv (site-packages are shared)
BASE_PY="$(.venv/bin/python -c 'import sys; print(sys._base_executable)')"
PYVER="$(.venv/bin/python -c 'import sys; print("python%d.%d" % sys.version_info[:2])')"
NUMPY="$(.venv/bin/python -c 'import numpy; print(numpy.__version__)')"
STAMP=".venv-ros2/.robot_rl_stamp"
WANT="$ROS_PKGS numpy==$NUMPY $BASE_PY $ROOT"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  rm -rf .venv-ros2
  "$BASE_PY" -m venv .venv-ros2
  echo "installing into .venv-ros2: $ROS_PKGS"
  # numpy pinned to .venv's so the layered packages (torch, ...) see the version they expect
  pipq .venv-ros2/bin/python -m pip install -q $ROS_PKGS "numpy==$NUMPY"
  SITE="$ROOT/.venv/lib/$PYVER/site-packages"
  echo "import site; site.addsitedir('$SITE')" \
    > ".venv-ros2/lib/$PYVER/site-packages/zz_robot_rl_main_venv.pth"
  echo "$WANT" > "$STAMP"
fi

# 3. smoke test: rclpy with its rmw, our package and the policy stack import in .venv-ros2
.venv-ros2/bin/python - <<'EOF'
import rclpy
from geometry_msgs.msg import PoseStamped  # noqa: F401
from sensor_msgs.msg import Image, JointState  # noqa: F401
from std_srvs.srv import Trigger  # noqa: F401
import robot_rl.hardware.ros2.node  # noqa: F401
import torch  # noqa: F401
rclpy.init()
print(f"ros2 venv ok: rclpy with {rclpy.get_rmw_implementation_identifier()}")
rclpy.shutdown()
EOF
