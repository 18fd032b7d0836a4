/* Physics substeps with the Cartesian impedance law of controllers/impedance.py, in C.
 *
 * Why C: the law must run every physics substep (500 Hz) and a numpy version costs
 * ~100 us per call here, three times the physics step itself. This file links against
 * nothing: MuJoCo's functions arrive as pointers resolved at run time from the libmujoco
 * that the Python bindings already loaded, and the state arrays are pointers into mjData.
 * It is loaded with ctypes (the Python module init below exists only so setuptools can
 * build it as an extension). Tests check it against the numpy law.
 *
 * Arm dofs must be the first 7 entries of qpos/qvel (the arm is the first body tree).
 */
#include <Python.h>
#include <math.h>
#include <string.h>

#define NA 7
#define MAXNV 64

typedef void (*step_fn)(const void *m, void *d);
typedef void (*jac_fn)(const void *m, const void *d, double *jacp, double *jacr, int site);
typedef void (*solvem_fn)(const void *m, void *d, double *x, const double *y, int n);

typedef struct {
    step_fn step1, step2;
    jac_fn jac_site;
    solvem_fn solve_m;
    const void *m;
    void *d;
    int nv, site, use_minv;
    double *qpos, *qvel, *ctrl, *site_xpos, *site_xmat, *qfrc_bias;
    double K[6], D[6], clip_lo[6], clip_hi[6];
    double kn, dn, max_rate;
    double tau_lim[NA];
    double target_pos[3], target_quat[4]; /* xyzw */
    double q_null[NA];
    double tau_prev[NA];
    int have_prev;
} Kernel;

static void mat2quat(const double *m, double *q) { /* row-major 3x3 -> xyzw (Shepperd) */
    double tr = m[0] + m[4] + m[8], s;
    if (tr > 0) {
        s = 2.0 * sqrt(tr + 1.0);
        q[0] = (m[7] - m[5]) / s; q[1] = (m[2] - m[6]) / s; q[2] = (m[3] - m[1]) / s; q[3] = 0.25 * s;
    } else if (m[0] > m[4] && m[0] > m[8]) {
        s = 2.0 * sqrt(1.0 + m[0] - m[4] - m[8]);
        q[0] = 0.25 * s; q[1] = (m[1] + m[3]) / s; q[2] = (m[2] + m[6]) / s; q[3] = (m[7] - m[5]) / s;
    } else if (m[4] > m[8]) {
        s = 2.0 * sqrt(1.0 + m[4] - m[0] - m[8]);
        q[0] = (m[1] + m[3]) / s; q[1] = 0.25 * s; q[2] = (m[5] + m[7]) / s; q[3] = (m[2] - m[6]) / s;
    } else {
        s = 2.0 * sqrt(1.0 + m[8] - m[0] - m[4]);
        q[0] = (m[2] + m[6]) / s; q[1] = (m[5] + m[7]) / s; q[2] = 0.25 * s; q[3] = (m[3] - m[1]) / s;
    }
    double n = sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    for (int i = 0; i < 4; i++) q[i] /= n;
}

/* rotation vector of target * conj(current), both xyzw */
static void orientation_error(const double *t, const double *c, double *e) {
    double cx = -c[0], cy = -c[1], cz = -c[2], cw = c[3];
    double x = t[3] * cx + t[0] * cw + t[1] * cz - t[2] * cy;
    double y = t[3] * cy - t[0] * cz + t[1] * cw + t[2] * cx;
    double z = t[3] * cz + t[0] * cy - t[1] * cx + t[2] * cw;
    double w = t[3] * cw - t[0] * cx - t[1] * cy - t[2] * cz;
    if (w < 0) { x = -x; y = -y; z = -z; w = -w; }
    double n = sqrt(x * x + y * y + z * z);
    double f = n < 1e-12 ? 2.0 : 2.0 * atan2(n, w) / n;
    e[0] = x * f; e[1] = y * f; e[2] = z * f;
}

/* in-place inverse of a symmetric positive definite 6x6 (Gauss-Jordan, no pivoting needed) */
static void inv6(double *a, double *inv) {
    memset(inv, 0, 36 * sizeof(double));
    for (int i = 0; i < 6; i++) inv[i * 7] = 1.0;
    for (int c = 0; c < 6; c++) {
        double p = a[c * 6 + c];
        for (int j = 0; j < 6; j++) { a[c * 6 + j] /= p; inv[c * 6 + j] /= p; }
        for (int r = 0; r < 6; r++) {
            if (r == c) continue;
            double f = a[r * 6 + c];
            if (f == 0.0) continue;
            for (int j = 0; j < 6; j++) { a[r * 6 + j] -= f * a[c * 6 + j]; inv[r * 6 + j] -= f * inv[c * 6 + j]; }
        }
    }
}

static void compute_torque(Kernel *k, double *tau) {
    double jacp[3 * MAXNV], jacr[3 * MAXNV], J[6 * NA];
    k->jac_site(k->m, k->d, jacp, jacr, k->site);
    for (int j = 0; j < NA; j++) {
        for (int r = 0; r < 3; r++) { J[r * NA + j] = jacp[r * k->nv + j]; J[(r + 3) * NA + j] = jacr[r * k->nv + j]; }
    }
    /* clipped pose error and task wrench */
    double quat[4], e[6], F[6];
    mat2quat(k->site_xmat, quat);
    for (int i = 0; i < 3; i++) e[i] = k->target_pos[i] - k->site_xpos[i];
    orientation_error(k->target_quat, quat, e + 3);
    for (int i = 0; i < 6; i++) {
        double ei = e[i] < k->clip_lo[i] ? k->clip_lo[i] : (e[i] > k->clip_hi[i] ? k->clip_hi[i] : e[i]);
        double v = 0.0;
        for (int j = 0; j < NA; j++) v += J[i * NA + j] * k->qvel[j];
        F[i] = k->K[i] * ei - k->D[i] * v;
    }
    /* Minv (arm block) from the factorized mass matrix */
    double Minv[NA * NA];
    if (k->use_minv) {
        double unit[NA * MAXNV], sol[NA * MAXNV];
        memset(unit, 0, sizeof(double) * NA * k->nv);
        for (int j = 0; j < NA; j++) unit[j * k->nv + j] = 1.0;
        k->solve_m(k->m, k->d, sol, unit, NA);
        for (int i = 0; i < NA; i++)
            for (int j = 0; j < NA; j++) Minv[i * NA + j] = sol[j * k->nv + i];
    } else {
        memset(Minv, 0, sizeof(Minv));
        for (int i = 0; i < NA; i++) Minv[i * NA + i] = 1.0;
    }
    /* nullspace: N = I - J^T Lambda J Minv, Lambda = (J Minv J^T + eps)^-1 */
    double JM[6 * NA], A[36], Lam[36];
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < NA; j++) {
            double s = 0.0;
            for (int l = 0; l < NA; l++) s += J[i * NA + l] * Minv[l * NA + j];
            JM[i * NA + j] = s;
        }
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++) {
            double s = (i == j) ? 1e-6 : 0.0;
            for (int l = 0; l < NA; l++) s += JM[i * NA + l] * J[j * NA + l];
            A[i * 6 + j] = s;
        }
    inv6(A, Lam);
    double tau0[NA], y[6], w[6];
    for (int j = 0; j < NA; j++) tau0[j] = k->kn * (k->q_null[j] - k->qpos[j]) - k->dn * k->qvel[j];
    for (int i = 0; i < 6; i++) { /* y = J Minv tau0 */
        double s = 0.0;
        for (int l = 0; l < NA; l++) s += JM[i * NA + l] * tau0[l];
        y[i] = s;
    }
    for (int i = 0; i < 6; i++) { /* w = Lambda y */
        double s = 0.0;
        for (int l = 0; l < 6; l++) s += Lam[i * 6 + l] * y[l];
        w[i] = s;
    }
    for (int j = 0; j < NA; j++) {
        double t = tau0[j] + k->qfrc_bias[j];
        for (int i = 0; i < 6; i++) t += J[i * NA + j] * (F[i] - w[i]);
        if (k->have_prev) {
            double d = t - k->tau_prev[j];
            if (d > k->max_rate) t = k->tau_prev[j] + k->max_rate;
            else if (d < -k->max_rate) t = k->tau_prev[j] - k->max_rate;
        }
        if (t > k->tau_lim[j]) t = k->tau_lim[j];
        else if (t < -k->tau_lim[j]) t = -k->tau_lim[j];
        tau[j] = t;
    }
}

/* Run n substeps; the control law is evaluated on the fresh kinematics of each one. */
int run_substeps(Kernel *k, int n) {
    if (k->nv > MAXNV) return -1;
    double tau[NA];
    for (int s = 0; s < n; s++) {
        k->step1(k->m, k->d);
        compute_torque(k, tau);
        for (int j = 0; j < NA; j++) { k->ctrl[j] = tau[j]; k->tau_prev[j] = tau[j]; }
        k->have_prev = 1;
        k->step2(k->m, k->d);
    }
    return 0;
}

/* Evaluate the law once on the current mjData (after mj_forward), for tests. */
int torque_once(Kernel *k, double *tau) {
    if (k->nv > MAXNV) return -1;
    compute_torque(k, tau);
    return 0;
}

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_impedance_kernel",
                                    "C substep kernel; used through ctypes", -1, NULL};
PyMODINIT_FUNC PyInit__impedance_kernel(void) { return PyModule_Create(&module); }
