# Reference numbers for glmm_ext's r2() / icc / overdispersion() on weighted and several-term fits.
# Run from this directory: Rscript reference.R  (writes the CSVs it uses and reference.json).
# performance::r2_nakagawa, performance::icc, insight::get_variance and performance::check_overdispersion
# on lme4 / glmmTMB fits.  insight's null model (for the Poisson / NB2 lambda) is update(model, y ~ (random
# terms)): it keeps the prior weights of the call.
suppressPackageStartupMessages({library(lme4); library(glmmTMB); library(performance); library(insight)
  library(jsonlite)})
versions <- sapply(c("lme4", "glmmTMB", "performance", "insight"), function(p) as.character(packageVersion(p)))

g <- read.csv("../grouseticks.csv")
g$YEAR <- factor(g$YEAR); g$BROOD <- factor(g$BROOD); g$LOCATION <- factor(g$LOCATION)
g$w <- 1 + (g$INDEX %% 3)              # prior weights 1, 2, 3 (Poisson: they multiply the log density)
write.csv(g[, c("INDEX", "TICKS", "BROOD", "LOCATION", "YEAR", "cHEIGHT", "w")], "grouseticks_w.csv", row.names = FALSE)

cb <- read.csv("../cbpp.csv"); cb$period <- factor(cb$period); cb$herd <- factor(cb$herd)
cb$prop <- cb$incidence / cb$size
write.csv(cb, "cbpp.csv", row.names = FALSE)

ss <- read.csv("../sleepstudy.csv"); ss$Subject <- factor(ss$Subject)
ss$w <- c(0.5, 1, 2)[(seq_len(nrow(ss)) %% 3) + 1]   # Gaussian precision weights
write.csv(ss, "sleepstudy_w.csv", row.names = FALSE)

sal <- read.csv("../multiterm_more/salamanders.csv")
sal$site <- factor(sal$site); sal$spp <- factor(sal$spp); sal$mined <- factor(sal$mined)
sal$w <- 1 + (seq_len(nrow(sal)) %% 2)   # 1, 2
write.csv(sal, "salamanders_w.csv", row.names = FALSE)

num <- function(x) if (is.null(x) || length(x) == 0) NA else unname(as.numeric(x))
summ <- function(m, overdisp = TRUE, null_unweighted = NULL) {
  r2 <- suppressWarnings(r2_nakagawa(m))
  v <- suppressWarnings(get_variance(m))
  ic <- suppressWarnings(icc(m))
  out <- list(r2_marginal = num(r2$R2_marginal), r2_conditional = num(r2$R2_conditional),
              var_fixed = num(v$var.fixed), var_random = num(v$var.random), var_residual = num(v$var.residual),
              var_distribution = num(v$var.distribution), var_dispersion = num(v$var.dispersion),
              icc_adjusted = num(ic$ICC_adjusted), icc_unadjusted = num(ic$ICC_unadjusted),
              loglik = num(logLik(m)), fixef = as.list(if (inherits(m, "glmmTMB")) fixef(m)$cond else fixef(m)))
  vc <- if (inherits(m, "glmmTMB")) VarCorr(m)$cond else VarCorr(m)
  out$re_var <- lapply(vc, function(s) num(s[1, 1]))
  out$fitted <- num(fitted(m))  # conditional means (response scale; Binomial: the proportion)
  if (inherits(m, "glmmTMB") && family(m)$family == "nbinom2") out$theta <- num(sigma(m))
  if (inherits(m, "merMod") && family(m)$family == "gaussian" || inherits(m, "lmerMod")) out$sigma2 <- num(sigma(m)^2)
  nm <- suppressWarnings(null_model(m))
  if (!is.null(nm)) {
    nf <- if (inherits(nm, "glmmTMB")) fixef(nm)$cond else fixef(nm)
    out$null_intercept <- num(nf[1]); out$null_loglik <- num(logLik(nm))
  }
  if (!is.null(null_unweighted)) {
    nf <- if (inherits(null_unweighted, "glmmTMB")) fixef(null_unweighted)$cond else fixef(null_unweighted)
    out$null_intercept_unweighted <- num(nf[1])
  }
  if (overdisp) {
    od <- check_overdispersion(m)
    out$overdispersion <- list(chisq = num(od$chisq_statistic), ratio = num(od$dispersion_ratio),
                               df = num(od$residual_df), pvalue = num(od$p_value))
    out$pearson <- num(residuals(m, type = "pearson"))
  }
  out
}
ctl <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
ref <- list(versions = as.list(versions))

# (a) weighted Poisson random intercept
m <- glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD), data = g, family = poisson, weights = w, control = ctl)
n0 <- glmer(TICKS ~ (1 | BROOD), data = g, family = poisson, control = ctl)
ref$poisson_w <- summ(m, null_unweighted = n0)
t <- glmmTMB(TICKS ~ YEAR + cHEIGHT + (1 | BROOD), data = g, family = poisson, weights = w)
ref$poisson_w_tmb <- summ(t)

# (b) Binomial with trials
m <- glmer(prop ~ period + (1 | herd), data = cb, family = binomial, weights = size, control = ctl)
ref$binomial_trials <- summ(m)
t <- glmmTMB(prop ~ period + (1 | herd), data = cb, family = binomial, weights = size)
ref$binomial_trials_tmb <- summ(t)

# (c) crossed Poisson, unweighted and weighted
m <- glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION), data = g, family = poisson, control = ctl)
ref$poisson_crossed <- summ(m)
m <- glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION), data = g, family = poisson, weights = w,
           control = ctl)
n0 <- glmer(TICKS ~ (1 | BROOD) + (1 | LOCATION), data = g, family = poisson, control = ctl)
ref$poisson_crossed_w <- summ(m, null_unweighted = n0)
t <- glmmTMB(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION), data = g, family = poisson, weights = w)
ref$poisson_crossed_w_tmb <- summ(t)

# (d) Gaussian with prior (precision) weights, REML and ML
m <- lmer(Reaction ~ Days + (1 | Subject), data = ss, weights = w)
ref$gaussian_w <- summ(m, overdisp = FALSE)
m <- lmer(Reaction ~ Days + (1 | Subject), data = ss, weights = w, REML = FALSE)
ref$gaussian_w_ml <- summ(m, overdisp = FALSE)

# (e) NB2 crossed (glmmTMB nbinom2), unweighted and weighted
t <- glmmTMB(count ~ mined + (1 | site) + (1 | spp), data = sal, family = nbinom2)
ref$nb2_crossed <- summ(t)
t <- glmmTMB(count ~ mined + (1 | site) + (1 | spp), data = sal, family = nbinom2, weights = w)
n0 <- glmmTMB(count ~ (1 | site) + (1 | spp), data = sal, family = nbinom2)
ref$nb2_crossed_w <- summ(t, null_unweighted = n0)

writeLines(toJSON(ref, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"), "reference.json")
