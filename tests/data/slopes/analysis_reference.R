# performance::r2_nakagawa / check_overdispersion and GLM log-likelihoods for random-slope fits
# -> analysis_reference.json (run from this directory: Rscript analysis_reference.R).  Used by
# tests/test_inference_checks.py and tests/test_inference_comparison.py; the package never needs R.
suppressMessages({library(lme4); library(glmmTMB); library(performance); library(jsonlite)})
num <- function(x) unname(as.numeric(x))
r2_list <- function(m) {
  r <- suppressWarnings(r2_nakagawa(m)); v <- suppressWarnings(insight::get_variance(m))
  list(marginal = num(r$R2_marginal), conditional = num(r$R2_conditional), var_fixed = num(v$var.fixed),
       var_random = num(v$var.random), var_residual = num(v$var.residual), loglik = num(logLik(m)))
}
od_list <- function(m) { o <- check_overdispersion(m); list(chisq = num(o$chisq_statistic), ratio = num(o$dispersion_ratio), df = num(o$residual_df), p = num(o$p_value)) }
rd <- function(f) { d <- read.csv(f); d$g <- factor(d$g); d }
sleep <- read.csv("../sleepstudy.csv"); sleep$Subject <- factor(sleep$Subject)
sbin <- rd("sim_binomial.csv"); spois <- rd("sim_poisson.csv"); spq3 <- rd("sim_poisson_q3.csv")
sgam <- rd("sim_gamma.csv")
cbpp <- read.csv("../cbpp.csv"); cbpp$herd <- factor(cbpp$herd); cbpp$pnum <- as.numeric(cbpp$period)
cb_tmb <- glmmTMB(cbind(incidence, size - incidence) ~ pnum + (pnum | herd), cbpp, family = binomial)
ss <- lmer(Reaction ~ Days + (Days | Subject), sleep, REML = TRUE)
b_lme4 <- glmer(y ~ x + (x | g), sbin, family = binomial)
b_tmb <- glmmTMB(y ~ x + (x | g), sbin, family = binomial)
p_lme4 <- glmer(y ~ x + (x | g), spois, family = poisson)
p_tmb <- glmmTMB(y ~ x + (x | g), spois, family = poisson)
out <- list(
  sleep_reml = list(r2 = r2_list(ss)),
  sim_binomial = list(r2_lme4 = r2_list(b_lme4), r2_tmb = r2_list(b_tmb), overdispersion = od_list(b_lme4), overdispersion_tmb = od_list(b_tmb),
                      glm_loglik = num(logLik(glm(y ~ x, sbin, family = binomial)))),
  sim_poisson = list(r2_lme4 = r2_list(p_lme4), r2_tmb = r2_list(p_tmb), overdispersion = od_list(p_lme4), overdispersion_tmb = od_list(p_tmb),
                     glm_loglik = num(logLik(glm(y ~ x, spois, family = poisson)))),
  sim_poisson_diag = list(r2_tmb = r2_list(glmmTMB(y ~ x + (x || g), spois, family = poisson))),
  sim_poisson_q3 = list(r2_tmb = r2_list(glmmTMB(y ~ x1 + x2 + (1 + x1 + x2 | g), spq3, family = poisson))),
  sim_gamma = list(r2_tmb = r2_list(glmmTMB(y ~ x + (x | g), sgam, family = Gamma(link = "log")))),
  cbpp_slope = list(r2_tmb = r2_list(cb_tmb), overdispersion_tmb = od_list(cb_tmb)),
  versions = list(performance = as.character(packageVersion("performance")),
                  insight = as.character(packageVersion("insight")), lme4 = as.character(packageVersion("lme4")),
                  glmmTMB = as.character(packageVersion("glmmTMB"))))
write_json(out, "analysis_reference.json", digits = NA, auto_unbox = TRUE, pretty = TRUE)
