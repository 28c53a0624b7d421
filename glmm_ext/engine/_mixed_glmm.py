"""Generalised mixed models of any random-effects structure: PIRLS modes, Laplace, nagq=0, AGQ.

With b = Lambda u (u spherical, `_structure`) and eta = X beta + offset + Z Lambda u, the conditional
modes maximise the penalised log-likelihood

    h(u) = sum_i log f(y_i | eta_i, phi) - |u|^2 / 2

by Newton steps on the blocked factor of H = Lambda'Z'DZ Lambda + I (`_pls`), D = diag(d), d = -d^2 log f /
d eta^2 the OBSERVED curvature (the one-term engine's definition, as glmmTMB: exact for non-canonical
links too); where H is not positive definite the step uses the Fisher working weights instead.  The
Laplace log-likelihood is h(u_hat) - log|H| / 2, every constant included (one term: the one-term
engine's sum over groups of h_j - log(H_j) / 2).  Beta, the covariance parameters and log phi
(dispersion families) are optimised jointly (lme4's nAGQ=1, glmmTMB).  nagq=0 maximises h over (u, beta)
jointly by PIRLS with the Fisher weights and optimises only the covariance parameters (and log phi) of
h - log|H_Fisher| / 2 (lme4's nAGQ=0).  nagq>1 (one scalar term): adaptive Gauss-Hermite quadrature of
each level's integral around the Laplace modes.
"""
from dataclasses import dataclass, replace

import numpy as np
from scipy import linalg

from ._gausshermite import gauss_hermite
from ._laplace import FLAT_MODE, agq_log_integrals
from ._dense_blocks import DenseFactor, DensePlan, use_dense
from ._pls import Factor, Layout, crossprods
from ._structure import ReStructure

#: Newton decrement g'H^-1g of the modes below which they are converged (the Laplace value then errs by
#: about sqrt of it through log|H|: far below the finite differences' resolution)
MODE_TOL = 1e-20
MODE_MAXITER = 60
#: random effects up to which the analytic beta gradient forms H^-1 densely
DENSE_INVERSE_MAX = 2000
#: log of the NB2 alpha's lower bound: data with no overdispersion have their supremum at alpha -> 0 (the Poisson
#: limit), where log alpha would drift for ever; at alpha = 1e-8 the likelihood is the limit's to ~1e-6 (glmmTMB
#: stops near there too), and the search holds log alpha at the bound with the other parameters free
NB_LOG_ALPHA_MIN = float(np.log(1e-8))


@dataclass
class ModeState:
    u: np.ndarray
    eta: np.ndarray
    h: float
    factor: Factor
    observed: bool  # the factor holds the observed curvature (else the Fisher weights)
    converged: bool
    iterations: int
    beta: np.ndarray = None  # nagq=0: beta from the joint PIRLS
    l1: np.ndarray = None  # d log f / d eta at the modes (Laplace states)
    d: np.ndarray = None  # observed curvature at the modes
    x: np.ndarray = None  # the parameters of the state (`laplace_state`)


def _level_order(structure):
    """Row permutation sorting one term's rows by level (None: several terms, or already sorted)."""
    if len(structure.terms) != 1:
        return None
    codes = np.asarray(structure.terms[0].codes)
    if codes.size < 2 or np.all(codes[1:] >= codes[:-1]):
        return None
    return np.argsort(codes, kind="stable")


def _take_rows(v, perm, n):
    """A per-row array (or tuple of them) in the order `perm`; scalars and None as they are."""
    if isinstance(v, tuple):
        return tuple(_take_rows(a, perm, n) for a in v)
    if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == n:
        return v[perm]
    return v


class _Lambdas(list):
    """Per-term factors in the engine's order; ``diag`` the whole diagonal of Lambda when every term is scalar."""

    diag = None


class MixedGLMM:
    """Laplace / AGQ / nagq=0 objectives of a GLMM on a `Layout`, with warm-started modes."""

    def __init__(self, structure, dist, y, X, offset, m, const, aux=None, dispersion_term=None):
        self.structure, self.dist = structure, dist
        # phi -> the eta-free part frequency weights add to a dispersion family's log-likelihood (`_weights`)
        self.dispersion_term = dispersion_term
        n = structure.n_rows
        # one term: rows sorted by level inside (segment sums instead of scatters); results stay in the user's order
        perm = _level_order(structure)
        self.rows = perm
        if perm is not None:
            t = structure.terms[0]
            inner = ReStructure((replace(t, codes=np.asarray(t.codes)[perm], Z=np.asarray(t.Z)[perm]),))
            y, X, offset, m, const, aux = (_take_rows(v, perm, n) for v in (y, X, offset, m, const, aux))
            self.lay = Layout(inner)
            self._layout = None
        else:
            self.lay = self._layout = Layout(structure)
        self.y, self.X, self.offset, self.m, self.const, self.aux = y, X, offset, m, const, aux
        self.p = X.shape[1]
        self.nc = structure.n_cov_params
        self.disp = dist.has_dispersion
        self.u_warm = np.zeros(self.lay.n_random)
        self.beta_warm = None
        self.n_calls = 0
        self.nagq = 1
        self._last_state = None
        floor = NB_LOG_ALPHA_MIN if dist.name == "negativebinomial" else -np.inf
        self.lower = np.concatenate([[-np.inf] * self.p, structure.lower_bounds(), [floor] * int(self.disp)])
        # few random effects after the first term (or one term): dense cross block, bincount / segment products
        self.plan = DensePlan(self.lay) if use_dense(self.lay) else None
        self.ops = self.plan.ops if self.plan is not None else None
        self.scalar = all(q == 1 for q in self.lay.q)
        self._term_of = np.repeat(np.arange(len(self.lay.q)), self.lay.n_levels)  # scalar terms: term of each effect

    @property
    def layout(self):
        """The `Layout` of the structure in the user's row order (the internal one may have its rows sorted)."""
        if self._layout is None:
            self._layout = Layout(self.structure)
        return self._layout

    def factor(self, w, lams, F=None):
        """The blocked factor of Lambda'Z'diag(w)Z Lambda + I (and the F columns): dense or sparse cross block."""
        if self.plan is not None:
            return DenseFactor(self.lay, self.plan.crossprods(w, F), lams)
        return Factor(self.lay, crossprods(self.lay, w, F), lams)

    def times_Z(self, b):
        return self.ops.times_Z(b) if self.ops is not None else self.lay.times_Z(b)

    def Zt_times(self, r):
        return self.ops.Zt_times(r) if self.ops is not None else self.lay.Zt_times(r)

    # ------------------------------------------------------------------ pieces
    def lams(self, theta):
        lams = _Lambdas(self.lay.lambdas(self.structure.unpack(theta)))
        if self.scalar:  # Lambda diagonal: one multiplication by its diagonal instead of a loop over terms
            lams.diag = np.array([lam[0, 0] for lam in lams]).take(self._term_of)
        return lams

    def lambda_times(self, lams, u, transpose=False):
        """Lambda u (or Lambda'u) for internal vectors (`Layout.lambda_times`)."""
        if lams.diag is not None:
            return lams.diag * u
        return self.lay.lambda_times(lams, u, transpose=transpose)

    def _point(self, eta_fixed, lams, phi, u):
        eta = eta_fixed + self.times_Z(self.lambda_times(lams, u))
        with np.errstate(all="ignore"):  # a trial point beyond the floating-point range is rejected, not reported
            ll, l1, d, _ = self.dist.evaluate(self.y, eta, self.m, phi, self.const, order=2, aux=self.aux)
        h = float(np.sum(ll)) - 0.5 * float(u @ u)
        return eta, l1, d, h

    def _gradient(self, lams, l1, u):
        return self.lambda_times(lams, self.Zt_times(l1), transpose=True) - u

    def modes(self, eta_fixed, lams, phi, u0):
        """Conditional modes at fixed beta (Newton with step halving); None when none inside the support."""
        u = np.array(u0, float)
        eta, l1, d, h = self._point(eta_fixed, lams, phi, u)
        if not np.isfinite(h):
            u = np.zeros_like(u)
            eta, l1, d, h = self._point(eta_fixed, lams, phi, u)
            if not np.isfinite(h):
                return None
        prev = np.inf
        for it in range(1, MODE_MAXITER + 1):
            g = self._gradient(lams, l1, u)
            observed = True
            try:
                fac = self.factor(d, lams)
            except (linalg.LinAlgError, np.linalg.LinAlgError):
                observed = False
                w = self.dist.working_weights(eta, self.m, phi)
                fac = self.factor(np.broadcast_to(w, eta.shape) * 1.0, lams)
            step = fac.solve(g)
            dec = float(g @ step)
            if not np.isfinite(dec):
                return None
            # absolute: the Laplace value errs by ~sqrt(dec) through log|H|, whatever the size of h
            if observed and (dec < MODE_TOL or (dec < 1e-14 and dec > 0.25 * prev)):
                return ModeState(u, eta, h, fac, True, True, it, l1=l1, d=d)
            prev = dec
            alpha, accepted = 1.0, False
            for _ in range(40):
                u_t = u + alpha * step
                eta_t, l1_t, d_t, h_t = self._point(eta_fixed, lams, phi, u_t)
                if np.isfinite(h_t) and (h_t >= h - 1e-12 * (1.0 + abs(h)) or (dec < 1e-10 and alpha == 1.0)):
                    accepted = True
                    break
                alpha *= 0.5
            if not accepted:  # no ascent left: at the rounding floor (or pinned at the support's edge)
                return ModeState(u, eta, h, fac, observed, observed and dec < 1e-8, it)
            u, eta, l1, d, h = u_t, eta_t, l1_t, d_t, h_t
        return ModeState(u, eta, h, fac, observed, False, MODE_MAXITER)

    def unpack(self, x):
        p, nc = self.p, self.nc
        beta, theta = x[:p], x[p:p + nc]
        phi = float(np.exp(x[p + nc])) if self.disp else 1.0
        return beta, theta, phi

    def eta_fixed(self, beta):
        return self.X @ beta + self.offset

    def moment_start(self, beta, phi=1.0):
        """Start of the covariance parameters: for scalar terms, per term the variance of the levels' one-step
        estimates b_j = sum_i l1_i z_i / sum_i w_i z_i^2 at the fixed effects `beta` (GLM working residuals on the
        term's column) less their mean sampling variance 1 / sum_i w_i z_i^2, as a relative SD floored at 0.1;
        one vector term: `_vector_moment_start`; vector terms among several: lme4's identity factors.  A start near the optimum spares the search its first
        steps to theta = 0 and back."""
        start = self.structure.start_params()
        lay = self.lay
        if not self.scalar:
            return self._vector_moment_start(beta, phi) if len(lay.q) == 1 and self.plan is not None else start
        eta = self.eta_fixed(beta)
        with np.errstate(all="ignore"):
            l1 = self.dist.evaluate(self.y, eta, self.m, phi, self.const, order=1, loglik=False, aux=self.aux)[1]
            w = np.broadcast_to(self.dist.working_weights(eta, self.m, phi), eta.shape)
            out = np.empty(len(lay.terms))
            for pos in range(len(lay.terms)):
                z, codes, nl = lay.Z[pos][:, 0], lay.codes[pos], lay.n_levels[pos]
                sw = np.bincount(codes, weights=w * z * z, minlength=nl)
                sl = np.bincount(codes, weights=l1 * z, minlength=nl)
                used = sw > 0
                b = sl[used] / sw[used]
                out[pos] = np.sqrt(max(float(np.var(b) - np.mean(1.0 / sw[used])), 0.01))
        if not np.all(np.isfinite(out)):
            return start
        user = np.empty(len(out))
        user[lay.order] = out
        return user

    def _vector_moment_start(self, beta, phi):
        """`moment_start` of one vector term: the levels' one-step estimates b_j = A_j^-1 sum_i l1_i z_i
        (A_j = sum_i w_i z_i z_i'), their covariance less the mean of A_j^-1, eigenvalues floored at 0.01, and its
        Cholesky factor; lme4's identity where fewer than q + 2 levels have a well-conditioned A_j."""
        start = self.structure.start_params()
        eta = self.eta_fixed(beta)
        with np.errstate(all="ignore"):
            l1 = self.dist.evaluate(self.y, eta, self.m, phi, self.const, order=1, loglik=False, aux=self.aux)[1]
            w = np.broadcast_to(self.dist.working_weights(eta, self.m, phi), eta.shape) * 1.0
            A = self.plan.crossprods(w)[0]
            q = A.shape[1]
            g = self.Zt_times(l1).reshape(len(A), q)
            tr = np.trace(A, axis1=1, axis2=2)
            ok = np.isfinite(tr) & (np.linalg.det(A) > 1e-8 * tr ** q)
            if ok.sum() < q + 2:
                return start
            Ainv = np.linalg.inv(A[ok])
            b = np.einsum("gab,gb->ga", Ainv, g[ok])
            S = np.cov(b.T, bias=True) - Ainv.mean(axis=0)
            if not np.all(np.isfinite(S)):
                return start
            ev, V = np.linalg.eigh(0.5 * (S + S.T))
            lam = np.linalg.cholesky((V * np.maximum(ev, 0.01)) @ V.T)
        term = self.structure.terms[0]
        if not term.correlated:
            lam = np.diag(np.sqrt(np.diag(lam @ lam.T)))
        rows, cols = term.theta_positions()
        return lam[rows, cols]

    # ------------------------------------------------------------------ objectives
    def laplace_state(self, x):
        beta, theta, phi = self.unpack(x)
        if not (np.all(np.isfinite(x)) and 0.0 < phi < np.inf):
            return None
        lams = self.lams(theta)
        u0 = self.u_warm
        prev = self._last_state
        if prev is not None and prev.x is not None and u0 is prev.u and prev.l1 is not None:
            u0 = self._predicted_modes(prev, x)
        st = self.modes(self.eta_fixed(beta), lams, phi, u0)
        if st is None or not st.converged or not st.observed:
            return None
        curv = self.level_curvatures(st, lams, FLAT_MODE)
        if curv is not None and np.min(curv) <= FLAT_MODE:
            return None  # a flat mode: outside the Laplace approximation (`_laplace.FLAT_MODE`), no point
        st.x = np.array(x, float)
        return st

    def level_curvatures(self, st, lams, floor=FLAT_MODE):
        """Each level's curvature at the modes, 1 / the largest eigenvalue of its q x q diagonal block of H^-1
        (one term: the smallest eigenvalue of its block of H; one scalar term: the scalar engine's H_j); None
        when H >= I (no negative observed curvature) or H's smallest eigenvalue is bounded above `floor`.

        Only a density that is not log-concave in eta (d_i < 0) makes H < I.  The bound
        lambda_min(H) >= 1 - sum_i max(-d_i, 0) |Lambda'z_i|^2 spares the inverse blocks where those rows weigh
        little; otherwise the blocks cost about one more factorisation of the dense block."""
        neg = np.minimum(st.d, 0.0)
        if not np.any(neg < 0.0):
            return None
        lay = self.lay
        weight = np.zeros(neg.shape)
        for pos, lam in enumerate(lams):
            zl = lay.Z[pos] @ lam
            weight += np.einsum("ir,ir->i", zl, zl)
        if 1.0 + float(neg @ weight) > floor:
            return None
        q = lay.q
        if len(q) == 1 and q[0] == 1:
            return st.factor.L11[:, 0, 0] ** 2
        if len(q) == 1:
            L = st.factor.L11
            return np.linalg.eigvalsh(L @ np.swapaxes(L, 1, 2)).min(axis=1)
        try:
            blocks = st.factor.inverse_diag_blocks()
        except (linalg.LinAlgError, np.linalg.LinAlgError):
            return np.zeros(1)
        with np.errstate(divide="ignore"):
            return np.concatenate([1.0 / np.linalg.eigvalsh(B)[:, -1] for B in blocks])

    def _predicted_modes(self, prev, x):
        """The modes at x to first order from a converged state at prev.x (the implicit function theorem on
        Lambda'Z'l1(eta) - u = 0, H fixed at its factor there): u + H^-1 [dLambda'Z'l1 - Lambda'Z'(d deta)],
        deta = X dbeta + Z dLambda u.  It saves the first Newton step's factorisation; prev.u where phi moves."""
        b0, th0, ph0 = self.unpack(prev.x)
        b1, th1, ph1 = self.unpack(x)
        if ph1 != ph0:
            return prev.u
        dlams = self.lams(th1 - th0)  # Lambda is linear in theta
        lams0 = self.lams(th0)
        with np.errstate(all="ignore"):
            deta = self.X @ (b1 - b0) + self.times_Z(self.lambda_times(dlams, prev.u))
            rhs = (self.lambda_times(dlams, self.Zt_times(prev.l1), transpose=True)
                   - self.lambda_times(lams0, self.Zt_times(prev.d * deta), transpose=True))
            u = prev.u + prev.factor.solve(rhs)
        return u if np.all(np.isfinite(u)) else prev.u

    def __call__(self, x):
        """-(Laplace or AGQ log-likelihood) at x = (beta, theta[, log phi]); inf where undefined."""
        self.n_calls += 1
        st = self.laplace_state(x)
        if st is None:
            return np.inf
        self.u_warm = st.u
        self._last_state = st
        if self.nagq > 1:
            return -self.agq_value(x, st)
        return -(st.h - 0.5 * st.factor.logdet_Z + self.weights_term(x[-1]))

    def weights_term(self, log_phi):
        """The frequency weights' eta-free term at phi = exp(log_phi) (0 without one)."""
        return 0.0 if self.dispersion_term is None else self.dispersion_term.value(float(np.exp(log_phi)))

    @property
    def has_beta_gradient(self):
        """True when `value_and_grad` differentiates beta analytically (Laplace; scalar terms, or random
        effects few enough for a dense H^-1)."""
        scalar = all(q == 1 for q in self.lay.q)
        one_term = len(self.lay.q) == 1  # H block diagonal by level: its q x q inverse blocks suffice
        return self.nagq == 1 and (scalar or one_term or self.lay.n_random <= DENSE_INVERSE_MAX)

    def value_and_grad(self, x, step=1e-4):
        """(-Laplace, its gradient): analytic in beta, central differences in theta and log phi.

        With s_i = z_i'Lambda H^-1 Lambda'z_i (row leverages), t = -d^3 log f / d eta^3 and D = diag(d):
        d/d beta [h(u_hat) - log|H| / 2] = X'l1 - X'(t s) / 2 + X'(d * Z Lambda H^-1 Lambda'Z'(t s)) / 2
        (the modes move with beta: du/d beta = -H^-1 Lambda'Z'DX)."""
        f = self(x)
        n = len(x)
        if not np.isfinite(f):
            return f, np.full(n, np.nan)
        st = self._last_state
        beta, theta, phi = self.unpack(x)
        lams = self.lams(theta)
        lay = self.lay
        _, l1, d, t = self.dist.evaluate(self.y, st.eta, self.m, phi, self.const, order=3, loglik=False,
                                         aux=self.aux)
        scalar = all(q == 1 for q in lay.q)
        if scalar:
            lev, traces = st.factor.row_leverages(lams)
        elif len(lams) == 1:  # one vector term: s_i = z_i' Lambda (H^-1)_jj Lambda' z_i from the level blocks
            K = st.factor.inverse_diag_blocks()[0]
            lev = self.ops.quadratic_rows(lams[0] @ K @ lams[0].T)
        else:
            Hinv = st.factor.dense_inverse()
            lev = np.zeros(len(self.y))
            zl = [lay.Z[pos] @ lams[pos] for pos in range(len(lams))]
            idx = [[lay.offsets[pos] + lay.codes[pos] * lay.q[pos] + a for a in range(lay.q[pos])]
                   for pos in range(len(lams))]
            for pos in range(len(lams)):
                for pos2 in range(len(lams)):
                    for a in range(lay.q[pos]):
                        for b in range(lay.q[pos2]):
                            lev += zl[pos][:, a] * zl[pos2][:, b] * Hinv[idx[pos][a], idx[pos2][b]]
        ts = t * lev
        Zts = self.Zt_times(ts)
        w = st.factor.solve(self.lambda_times(lams, Zts, transpose=True))
        back = d * self.times_Z(self.lambda_times(lams, w))
        g_beta = self.X.T @ (l1 - 0.5 * ts + 0.5 * back)
        grad = np.empty(n)
        grad[:self.p] = -g_beta
        fd_from = self.p
        if scalar or len(lams) == 1:  # theta analytic too (see `_theta_gradient`, `_vector_theta_gradient`)
            g_theta = (self._theta_gradient(st, lams, l1, ts, back, w, traces) if scalar
                       else self._vector_theta_gradient(st, lams[0], K, self.Zt_times(l1), 0.5 * Zts))
            grad[self.p:self.p + self.nc] = -g_theta
            fd_from = self.p + self.nc
        u_keep = st.u
        for j in range(fd_from, n):  # (theta and) log phi: central differences, each from the modes at x
            e = np.zeros(n)
            e[j] = step * max(1.0, abs(x[j]))
            self.u_warm = u_keep
            fp = self(x + e)
            self.u_warm = u_keep
            fm = self(x - e) if x[j] - e[j] >= self.lower[j] else None
            grad[j] = (fp - f) / e[j] if fm is None else (fp - fm) / (2.0 * e[j])
        self.u_warm = u_keep
        return f, grad

    def _vector_theta_gradient(self, st, lam, K, Ztl1, Zts):
        """d Laplace / d theta for one vector term (b_j = Lambda u_j, K_j = H_j^-1, s_i = t_i w_i'K_j w_i / 2,
        w_i = Lambda'z_i, g_j = sum_i l1_i z_i, S_j = sum_i s_i z_i, v_j = K_j sum_i s_i w_i = K_j Lambda'S_j,
        A_j = sum_i d_i z_i z_i' (the factor's cross-products at the modes)):

            d/d Lambda = sum_j (g_j - S_j + A_j Lambda v_j) u_j' - g_j v_j' - A_j Lambda K_j,

        the envelope terms plus log|H_j| through the modes (du_j/d Lambda = K_j d^2 h_j / du d Lambda).
        ``Ztl1`` = Z'l1 and ``Zts`` = Z's (level-major), from the caller's row passes."""
        G, q = K.shape[0], lam.shape[0]
        u = st.u[:G * q].reshape(G, q)
        g, S = Ztl1.reshape(G, q), Zts.reshape(G, q)
        v = np.einsum("gqr,gr->gq", K, S @ lam)
        A_lam = st.factor.A11 @ lam
        left = g - S + np.einsum("gab,gb->ga", A_lam, v)
        grad = left.T @ u - g.T @ v - np.sum(A_lam @ K, axis=0)
        rows, cols = self.structure.terms[0].theta_positions()
        return grad[rows, cols]

    def _theta_gradient(self, st, lams, l1, ts, back, w, traces):
        """d Laplace / d theta_k for scalar terms (user's order).  With v_k = Z_k u_k (the term's part of eta
        per unit theta_k), du/d theta_k = H^-1 (P_k Z'l1 - Lambda'Z'(d v_k)) and d eta = v_k + Z Lambda du:

            l1'v_k - [(2 / theta_k)(n_k - tr(H^-1 P_k)) + sum_i t_i s_i d eta_i] / 2,

        where, H being symmetric, (ts)'Z Lambda du = w'(P_k Z'l1) - back'v_k with the beta gradient's
        w = H^-1 Lambda'Z'(ts) and back = d Z Lambda w: no solve per term, and every v_k product is a level sum
        (l1'v_k = (Z_k'l1)'u_k)."""
        lay = self.lay
        Ztl1 = self.Zt_times(l1)
        Ztr = self.Zt_times(ts - back)
        u = st.u
        out = np.empty(len(lams))
        for pos, lam in enumerate(lams):
            th = float(lam[0, 0])
            sl = slice(lay.offsets[pos], lay.offsets[pos + 1])
            logdet = 2.0 / th * (lay.n_levels[pos] - traces[pos]) if th > 0 else 0.0
            out[pos] = float(Ztl1[sl] @ u[sl]) - 0.5 * (logdet + float(Ztr[sl] @ u[sl]) + float(w[sl] @ Ztl1[sl]))
        user = np.empty(len(lams))
        user[lay.order] = out
        return user

    def agq_value(self, x, st):
        """Adaptive Gauss-Hermite log-likelihood around the modes (one scalar term)."""
        beta, theta, phi = self.unpack(x)
        lay = self.lay
        lam = float(self.lams(theta)[0][0, 0])
        H = st.factor.L11[:, 0, 0] ** 2
        z, logw = gauss_hermite(self.nagq)
        codes, zc = lay.codes[0], lay.Z[0][:, 0]
        eta_fixed = self.eta_fixed(beta)
        node_h = np.empty((len(H), len(z)))
        c = np.sqrt(2.0 / H)
        for k in range(len(z)):
            uk = st.u + c * z[k]
            eta = eta_fixed + lam * zc * uk[codes]
            ll = self.dist.evaluate(self.y, eta, self.m, phi, self.const, order=0, aux=self.aux)[0]
            ll = np.where(np.isfinite(ll), ll, -np.inf)
            node_h[:, k] = np.bincount(codes, weights=ll, minlength=len(H)) - 0.5 * uk * uk
        logL, _ = agq_log_integrals(node_h, H, z, logw)
        return float(np.sum(logL)) + self.weights_term(x[-1])

    # ------------------------------------------------------------------ nagq = 0
    def pirls_joint(self, theta, phi, beta0, u0, tol=1e-20, maxiter=200):
        """(u, beta) maximising h jointly by Fisher scoring on the blocked system with F = X; ModeState."""
        lams = self.lams(theta)
        u, beta = np.array(u0, float), np.array(beta0, float)
        X = self.X
        eta, l1, _, h = self._point(self.eta_fixed(beta), lams, phi, u)
        if not np.isfinite(h):
            u = np.zeros_like(u)
            eta, l1, _, h = self._point(self.eta_fixed(beta), lams, phi, u)
            if not np.isfinite(h):
                return None
        prev = np.inf
        fac = None
        for it in range(1, maxiter + 1):
            w = np.broadcast_to(self.dist.working_weights(eta, self.m, phi), eta.shape) * 1.0
            fac = self.factor(w, lams, X)
            if fac.LFF is None:
                return None
            g = np.concatenate([self._gradient(lams, l1, u), X.T @ l1])
            step = fac.solve(g)
            dec = float(g @ step)
            if not np.isfinite(dec):
                return None
            if dec < tol or (dec < 1e-14 and dec > 0.5 * prev):
                st = ModeState(u, eta, h, fac, False, True, it, beta)
                return st
            prev = dec
            nu = len(u)
            alpha, accepted = 1.0, False
            for _ in range(40):
                u_t, b_t = u + alpha * step[:nu], beta + alpha * step[nu:]
                eta_t, l1_t, _, h_t = self._point(self.eta_fixed(b_t), lams, phi, u_t)
                if np.isfinite(h_t) and (h_t >= h - 1e-12 * (1.0 + abs(h)) or (dec < 1e-10 and alpha == 1.0)):
                    accepted = True
                    break
                alpha *= 0.5
            if not accepted:
                return ModeState(u, eta, h, fac, False, dec < 1e-8, it, beta)
            u, beta, eta, l1, h = u_t, b_t, eta_t, l1_t, h_t
        return ModeState(u, eta, h, fac, False, False, maxiter, beta)

    def nagq0_objective(self, v):
        """-(h(u_hat, beta_hat) - log|H_Fisher| / 2) at v = (theta[, log phi])."""
        self.n_calls += 1
        theta = v[:self.nc]
        phi = float(np.exp(v[self.nc])) if self.disp else 1.0
        if not (np.all(np.isfinite(v)) and 0.0 < phi < np.inf):
            return np.inf
        st = self.pirls_joint(theta, phi, self.beta_warm, self.u_warm)
        if st is None or not st.converged:
            return np.inf
        self.u_warm, self.beta_warm = st.u, st.beta
        return -(st.h - 0.5 * st.factor.logdet_Z + self.weights_term(v[-1]))


def scaling_matrix(X):
    """A with X A = X centred (when a constant column exists) and scaled to unit SD / RMS per column."""
    n, p = X.shape
    A = np.eye(p)
    const = [j for j in range(p) if np.all(X[:, j] == X[0, j]) and X[0, j] != 0.0]
    k0 = const[0] if const else -1
    for j in range(p):
        if j == k0:
            continue
        col = X[:, j]
        if k0 >= 0:
            c, s = col.mean(), col.std()
            s = s if s > 0 else 1.0
            A[j, j] = 1.0 / s
            A[k0, j] = -c / (s * X[0, k0])
        else:
            s = np.sqrt(np.mean(col * col))
            A[j, j] = 1.0 / (s if s > 0 else 1.0)
    return A


def response_scale(dist, y):
    """c with the engine fitting y / c for Gamma and Gaussian-log (as the one-term engine: a power of 2)."""
    if not (dist.name == "gamma" or (dist.name == "gaussian" and dist.link_name == "log")):
        return 1.0
    size = np.exp(np.mean(np.log(y))) if dist.name == "gamma" else np.sqrt(np.mean(y * y))
    if not (np.isfinite(size) and size > 0):
        return 1.0
    return float(2.0 ** np.round(np.log2(size)))


def uncentre_fit(model, search, maps, fit):
    """`fit` of `search` (a MixedGLMM on centred z columns, `_centring`) as a fit of `model` (the same model on the
    user's columns): beta and phi as they are, the covariance parameters mapped back; and the Jacobian T of that
    map over all parameters (the search's Hessian stays: its beta block is the same in either parametrisation, and
    `uncentre_cov_all` carries the rest)."""
    from ._centring import jacobian, to_original

    p, nc = search.p, search.nc
    x = np.asarray(fit["x"], float)
    theta_c = x[p:p + nc]
    x_o = x.copy()
    x_o[p:p + nc] = to_original(model.structure, maps, search.structure, theta_c)
    T = np.eye(len(x))
    T[p:p + nc, p:p + nc] = jacobian(model.structure, maps, search.structure, theta_c)
    model.beta_warm = search.beta_warm
    model.n_calls += search.n_calls
    res = replace(fit["res"], x=x_o)
    return {**fit, "x": x_o, "res": res}, T


def uncentre_cov_all(result, T):
    """The covariance of all parameters of a MixedFit from the centred search in the user's parametrisation,
    T cov T' (a coordinate held at its bound, NaN in the search's, leaves NaN where it enters)."""
    cov = result.cov_all
    if cov is not None:
        held = np.isnan(np.diag(cov))
        out = T @ np.nan_to_num(cov) @ T.T
        touched = np.abs(T[:, held]).sum(axis=1) > 0
        out[touched, :] = np.nan
        out[:, touched] = np.nan
        result.cov_all = out
    return result
