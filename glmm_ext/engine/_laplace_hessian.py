"""Exact Hessian of the Laplace log-likelihood of a random-intercept GLMM, from one pass over the rows.

For group j (rows i in j) with eta_i = a_i + sigma b (a_i = x_i'beta + offset_i), the Laplace value is
F_j = Phi(theta, b_j(theta)) with

    Phi(theta, b) = h(theta, b) - log H(theta, b) / 2,   h = sum_i log f_i - b^2 / 2,   H = 1 + sigma^2 D,

theta = (beta, sigma, lambda = log phi), D = sum_i d_i and b_j(theta) the mode (h_b = 0).  Implicit
differentiation of h_b = 0 gives b_theta = h_btheta / H and
b_thetatheta = (h_bthetatheta - H_theta b_theta' - b_theta H_theta' - H_b b_theta b_theta') / H, so

    F_thetatheta = Phi_thetatheta + Phi_btheta b_theta' + b_theta Phi_btheta' + Phi_bb b_theta b_theta'
                   + Phi_b b_thetatheta,
    Phi_thetatheta = h_thetatheta - H_thetatheta / (2 H) + H_theta H_theta' / (2 H^2),
    Phi_btheta = h_btheta - H_btheta / (2 H) + H_b H_theta / (2 H^2),   Phi_b = -H_b / (2 H),
    Phi_bb = -H - H_bb / (2 H) + H_b^2 / (2 H^2).

Every partial derivative is a group sum of the row derivatives l1, d, t, q of log f in eta (orders 1
to 4, `_kernels`) times x_i and powers of sigma and b (L1, D, T, Q their group sums; S_d, S_t, S_q the
group sums of d x, t x, q x).  E.g. H_beta = sigma^2 S_t, H_sigma = 2 sigma D + sigma^2 b T, H_b = sigma^3 T,
h_bbeta = -sigma S_d, h_bsigma = L1 - sigma b D.  A dispersion enters log f as phi^-1 times its eta part
(Gaussian, Gamma), so the lambda-derivative of each eta-derivative is minus itself.  The one (p x p)
sum over rows is X' diag(w) X with w_i = -d_i - sigma^2 q_i / (2 H_j) - sigma c_j t_i, c_j = Phi_b / H_j;
the rest is O(G p^2).
"""
import numpy as np

from ._kernels import in_group_blocks
from ._segments import group_sums, to_rows


def laplace_hessian(dist, data, sigma, phi, md, dispersion_curvature=0.0):
    """d^2 F / d theta d theta' (F the Laplace log-likelihood) over theta = (gamma, sigma[, log phi]).

    `md` are the exact conditional modes at theta with l1, d and t (``_laplace.Modes``);
    `dispersion_curvature` is the second log-phi derivative of the eta-free part that frequency
    weights add (``GLMMData.dispersion_term``).  Requires ``dist.has_exact_hessian``.
    """
    X, starts, counts = data.X, data.starts, data.counts
    p = X.shape[1]
    k = p + 1 + int(dist.has_dispersion)
    l1, d, t = md.l1, md.d, md.t
    q = dist.fourth(data.y, md.eta, data.m, phi, d, t)
    b, H = md.b, md.H
    L1, D, T, Q = (group_sums(v, starts) for v in (l1, d, t, q))
    s = sigma
    s2 = s * s
    Hb = s2 * s * T
    c = -0.5 * Hb / (H * H)  # Phi_b / H
    Sd, St, Sq, XwX = _row_sums(X, d, t, q, 0.5 * s2 / H, s * c, starts, counts)
    phi_bb = -H - 0.5 * s2 * s2 * Q / H + 0.5 * Hb * Hb / (H * H)

    # group k-vectors: H_theta, h_btheta, H_btheta
    G = len(H)
    H_th, h_bth, H_bth = np.empty((G, k)), np.empty((G, k)), np.empty((G, k))
    H_th[:, :p], H_th[:, p] = s2 * St, 2.0 * s * D + s2 * b * T
    h_bth[:, :p], h_bth[:, p] = -s * Sd, L1 - s * b * D
    H_bth[:, :p], H_bth[:, p] = s2 * s * Sq, 3.0 * s2 * T + s2 * s * b * Q
    if k > p + 1:
        H_th[:, p + 1], h_bth[:, p + 1], H_bth[:, p + 1] = -s2 * D, -s * L1, -s2 * s * T
    inv_H = (1.0 / H)[:, None]
    b_th = h_bth * inv_H
    phi_bth = h_bth - 0.5 * H_bth * inv_H + (0.5 * Hb / (H * H))[:, None] * H_th
    U = phi_bth - c[:, None] * H_th
    alpha = phi_bb - c * Hb
    hess = U.T @ b_th
    hess += hess.T
    hess += (b_th * alpha[:, None]).T @ b_th + (H_th * (0.5 / (H * H))[:, None]).T @ H_th

    # h_thetatheta - H_thetatheta / (2 H) + c h_bthetatheta: rows (beta, beta), groups (the rest)
    hess[:p, :p] += XwX
    cross = Sd.T @ (-b - c) + St.T @ (-s / H - c * s * b) + Sq.T @ (-0.5 * s2 * b / H)
    hess[:p, p] += cross
    hess[p, :p] += cross
    hess[p, p] += np.sum(-b * b * D - (D + 2.0 * s * b * T + 0.5 * s2 * b * b * Q) / H
                         + c * (-2.0 * b * D - s * b * b * T))
    if k > p + 1:
        P2 = dist.d2loglik_dlogphi2(data.y, md.eta, data.m, phi, data.const)
        cross = -(X.T @ l1) + St.T @ (0.5 * s2 / H) + Sd.T @ (c * s)
        hess[:p, p + 1] += cross
        hess[p + 1, :p] += cross
        sl = np.sum(-b * L1 + (s * D + 0.5 * s2 * b * T) / H + c * (s * b * D - L1))
        hess[p, p + 1] += sl
        hess[p + 1, p] += sl
        hess[p + 1, p + 1] += np.sum(P2) + np.sum(-0.5 * s2 * D / H + c * s * L1) + dispersion_curvature
    return hess


def _row_sums(X, d, t, q, a, e, starts, counts):
    """(S_d, S_t, S_q, X' diag(w) X) with S_v the group sums of v x and w = -d - a_j q - e_j t (a, e per
    group), in blocks of whole groups on the kernel threads when the rows are many."""
    def block(r0, r1, g0, g1):
        Xb, sb = X[r0:r1], starts[g0:g1] - r0
        sums = [group_sums(Xb * v[r0:r1, None], sb) for v in (d, t, q)]
        w = -d[r0:r1] - to_rows(a[g0:g1], counts[g0:g1]) * q[r0:r1] - to_rows(e[g0:g1], counts[g0:g1]) * t[r0:r1]
        return sums, Xb.T @ (Xb * w[:, None])

    parts = in_group_blocks(block, X.shape[0], starts)
    Sd, St, Sq = (np.concatenate([part[0][i] for part in parts]) for i in range(3))
    return Sd, St, Sq, sum(part[1] for part in parts)
