"""``cephalo doctor``: the fast training paths proven on this machine (correctness against the plain path,
memory, speed), and the settings they recommend for it. Order of the checks: :mod:`cephalo.doctor.run`."""
