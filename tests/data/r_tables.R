# Reference numbers for tests/test_tables_r.py, computed with lme4, glmmTMB and performance.
# Run from the repository root:  Rscript tests/data/r_tables.R  (writes tests/data/r_tables.json)
# R 4, lme4 1.1-31, glmmTMB 1.1.5, TMB 1.9.2, performance 0.10.2, jsonlite.
suppressPackageStartupMessages({library(lme4); library(glmmTMB); library(performance); library(jsonlite)})

dir <- "tests/data"
rd <- function(f) read.csv(file.path(dir, f), stringsAsFactors = FALSE)

# conditional SD of each random intercept with the parameters held at the estimates: sqrt of the diagonal
# of the inverse Hessian of glmmTMB's joint negative log-likelihood in the random effects (TMB's automatic
# differentiation, the OBSERVED curvature; ranef(condVar) would add the fixed-effect uncertainty)
cond_sd <- function(fit) {
  env <- fit$obj$env
  H <- env$spHess(env$last.par.best, random = TRUE)
  sqrt(diag(solve(as.matrix(H))))
}

wald <- function(coefs, level) {
  z <- qnorm(1 - (1 - level) / 2)
  cbind(coefs[, 1] - z * coefs[, 2], coefs[, 1] + z * coefs[, 2])
}

tmb_case <- function(formula, data, family, groups, level = 0.95, start = NULL) {
  fit <- if (is.null(start)) glmmTMB(formula, data = data, family = family) else
    glmmTMB(formula, data = data, family = family, start = list(beta = start))
  co <- summary(fit)$coefficients$cond
  ci <- confint(fit, method = "wald", level = level, parm = "beta_")
  re <- ranef(fit)$cond[[groups]]
  out <- list(
    engine = "glmmTMB",
    loglik = as.numeric(logLik(fit)), aic = AIC(fit), bic = BIC(fit), df = attr(logLik(fit), "df"),
    nobs = nobs(fit), ngroups = nrow(re),
    estimate = as.list(co[, 1]), se = as.list(co[, 2]), z = as.list(co[, 3]), p = as.list(co[, 4]),
    lower = as.list(setNames(ci[, 1], rownames(co))), upper = as.list(setNames(ci[, 2], rownames(co))),
    var_re = as.numeric(VarCorr(fit)$cond[[groups]]), sigma = sigma(fit),
    ranef = as.list(setNames(re[, 1], rownames(re))),
    ranef_cond_sd = as.list(setNames(cond_sd(fit), rownames(re))),
    fitted = unname(fitted(fit)),
    pearson = unname(residuals(fit, type = "pearson"))
  )
  list(fit = fit, out = out)
}

res <- list()

# Gaussian identity, REML: lme4 prints the same table numbers; performance prints the ICC
sleep <- rd("sleepstudy.csv"); sleep$Subject <- factor(sleep$Subject)
m <- lmer(Reaction ~ Days + (1 | Subject), data = sleep, REML = TRUE)
co <- summary(m)$coefficients
ci <- confint(m, method = "Wald", level = 0.9)[c("(Intercept)", "Days"), ]
res$sleepstudy_ri <- list(
  engine = "lme4", level = 0.9,
  loglik = as.numeric(logLik(m)), aic = AIC(m), bic = BIC(m), df = attr(logLik(m), "df"), nobs = nobs(m),
  estimate = as.list(co[, 1]), se = as.list(co[, 2]), z = as.list(co[, 3]),
  p = as.list(2 * pnorm(-abs(co[, 3]))),
  lower = as.list(ci[, 1]), upper = as.list(ci[, 2]),
  icc = performance::icc(m)$ICC_adjusted,
  fitted = unname(fitted(m)), deviance = unname(residuals(m, type = "deviance")),
  pearson = unname(residuals(m, type = "pearson"))
)

# Binomial logit with trials: lme4 (Laplace) for the residuals (glmer's family formulas with prior weights)
cbpp <- rd("cbpp.csv"); cbpp$herd <- factor(cbpp$herd); cbpp$period <- factor(cbpp$period)
g <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial)
t <- tmb_case(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial(), "herd")
t$out$icc <- performance::icc(t$fit)$ICC_adjusted
t$out$lme4_fitted <- unname(fitted(g))
t$out$lme4_deviance <- unname(residuals(g, type = "deviance"))
t$out$lme4_pearson <- unname(residuals(g, type = "pearson"))
res$cbpp_binomial <- t$out

ticks <- rd("grouseticks.csv"); ticks$YEAR <- factor(ticks$YEAR); ticks$BROOD <- factor(ticks$BROOD)
res$grouseticks_poisson <- tmb_case(TICKS ~ YEAR + cHEIGHT + (1 | BROOD), ticks, poisson(), "BROOD")$out

probit <- rd("sim_bern_probit.csv"); probit$g <- factor(probit$g)
t <- tmb_case(y ~ x1 + x2 + (1 | g), probit, binomial(link = "probit"), "g")
t$out$icc <- performance::icc(t$fit)$ICC_adjusted
res$sim_bern_probit <- t$out

pois <- rd("sim_poisson_log.csv"); pois$g <- factor(pois$g)
res$sim_poisson_offset <- tmb_case(y ~ x1 + x2 + offset(logexp) + (1 | g), pois, poisson(), "g")$out

gl <- rd("sim_gamma_log.csv"); gl$g <- factor(gl$g)
res$sim_gamma_log <- tmb_case(y ~ x1 + x2 + (1 | g), gl, Gamma(link = "log"), "g")$out

pid <- rd("sim_poisson_identity.csv"); pid$g <- factor(pid$g)
res$sim_poisson_identity <- tmb_case(y ~ x1 + x2 + (1 | g), pid, poisson(link = "identity"), "g",
                                       start = coef(lm(y ~ x1 + x2, data = pid)))$out

gid <- rd("sim_gamma_identity.csv"); gid$g <- factor(gid$g)
res$sim_gamma_identity <- tmb_case(y ~ x1 + x2 + (1 | g), gid, Gamma(link = "identity"), "g",
                                     start = coef(lm(y ~ x1 + x2, data = gid)))$out

glg <- rd("sim_gaussian_log.csv"); glg$g <- factor(glg$g)
res$sim_gaussian_log <- tmb_case(y ~ x1 + x2 + (1 | g), glg, gaussian(link = "log"), "g")$out

res$provenance <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                       glmmTMB = as.character(packageVersion("glmmTMB")),
                       TMB = as.character(packageVersion("TMB")),
                       performance = as.character(packageVersion("performance")))
writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, pretty = TRUE), file.path(dir, "r_tables.json"))
