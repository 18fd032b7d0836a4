"""MuJoCo (and PyBullet) implementations of the HAL, tasks and gymnasium ids."""
