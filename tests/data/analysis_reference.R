# Reference numbers for tests/test_inference_*.py and tests/test_fitting_*.py (run once: Rscript tests/data/analysis_reference.R).
# R is never needed by the tests; they read analysis_reference.json written here.
suppressMessages({library(lme4); library(glmmTMB); library(performance); library(jsonlite)})
dir <- "tests/data"
out <- list()
num <- function(x) unname(as.numeric(x))
anova_rows <- function(a) list(npar = num(a$npar), AIC = num(a$AIC), BIC = num(a$BIC), logLik = num(a$logLik),
                               deviance = num(a$deviance), Chisq = num(a$Chisq), Df = num(a$Df),
                               p = num(a[["Pr(>Chisq)"]]))
ci_list <- function(ci) list(rows = rownames(ci), lower = num(ci[, 1]), upper = num(ci[, 2]))
r2_list <- function(m) {
  r <- suppressWarnings(r2_nakagawa(m)); v <- suppressWarnings(insight::get_variance(m))
  list(marginal = num(r$R2_marginal), conditional = num(r$R2_conditional), var_fixed = num(v$var.fixed),
       var_random = num(v$var.random), var_residual = num(v$var.residual))
}
od_list <- function(m) { o <- check_overdispersion(m); list(chisq = num(o$chisq_statistic), ratio = num(o$dispersion_ratio), df = num(o$residual_df), p = num(o$p_value)) }

# --- sleepstudy (Gaussian): anova of REML fits refitted by ML, profile intervals (REML and ML)
ss <- read.csv(file.path(dir, "sleepstudy.csv")); ss$Subject <- factor(ss$Subject)
big <- lmer(Reaction ~ Days + (1 | Subject), ss, REML = TRUE)
small <- lmer(Reaction ~ 1 + (1 | Subject), ss, REML = TRUE)
big_ml <- update(big, REML = FALSE)
out$sleepstudy <- list(anova = anova_rows(suppressMessages(anova(small, big))),
                       profile_reml = ci_list(confint(big, method = "profile", oldNames = FALSE)),
                       profile_ml = ci_list(confint(big_ml, method = "profile", oldNames = FALSE)),
                       profile_ml_90 = ci_list(confint(big_ml, method = "profile", level = 0.9, oldNames = FALSE)),
                       lm_loglik_ml = num(logLik(lm(Reaction ~ Days, ss))),
                       lm_loglik_reml = num(logLik(lm(Reaction ~ Days, ss), REML = TRUE)),
                       r2 = r2_list(big))

# --- lmer with prior weights (glmm_ext's var_weights): w = 1 + Days %% 3
ss$w <- 1 + ss$Days %% 3
wr <- lmer(Reaction ~ Days + (1 | Subject), ss, weights = w, REML = TRUE)
wm <- lmer(Reaction ~ Days + (1 | Subject), ss, weights = w, REML = FALSE)
out$sleepstudy_weights <- list(reml = list(loglik = num(logLik(wr)), fixef = num(fixef(wr)), sd = num(attr(VarCorr(wr)$Subject, "stddev")), sigma = num(sigma(wr))),
                               ml = list(loglik = num(logLik(wm)), fixef = num(fixef(wm)), sd = num(attr(VarCorr(wm)$Subject, "stddev")), sigma = num(sigma(wm))))

# --- cbpp (Binomial logit): anova, GLM logLik, profile, R2, overdispersion; cloglog fit
cb <- read.csv(file.path(dir, "cbpp.csv")); cb$herd <- factor(cb$herd); cb$period <- factor(cb$period)
gb <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cb, family = binomial)
gs <- glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), cb, family = binomial)
glm_cb <- glm(cbind(incidence, size - incidence) ~ period, cb, family = binomial)
cll <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cb, family = binomial(link = "cloglog"))
# glmmTMB's Laplace uses the observed curvature, as glmm_ext; glmer's uses the expected one for non-canonical links
cll_tmb <- glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), cb, family = binomial(link = "cloglog"))
out$cbpp <- list(anova = anova_rows(anova(gs, gb)), glm_loglik = num(logLik(glm_cb)),
                 profile = ci_list(confint(gb, method = "profile", oldNames = FALSE)),
                 r2 = r2_list(gb), overdispersion = od_list(gb),
                 cloglog = list(loglik = num(logLik(cll)), fixef = num(fixef(cll)), sd = num(attr(VarCorr(cll)$herd, "stddev")),
                                r2 = r2_list(cll)),
                 cloglog_tmb = list(loglik = num(logLik(cll_tmb)), fixef = num(fixef(cll_tmb)$cond),
                                    sd = num(attr(VarCorr(cll_tmb)$cond$herd, "stddev")), r2 = r2_list(cll_tmb)))

# --- grouseticks (Poisson log): R2, overdispersion, GLM logLik; negative binomial (glmmTMB nbinom2)
gt <- read.csv(file.path(dir, "grouseticks.csv")); gt$BROOD <- factor(gt$BROOD); gt$YEAR <- factor(gt$YEAR)
gt$HEIGHTs <- as.numeric(scale(gt$HEIGHT))
pm <- glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD), gt, family = poisson)
nb <- glmmTMB(TICKS ~ YEAR + HEIGHTs + (1 | BROOD), gt, family = nbinom2)
nb_glm <- glmmTMB(TICKS ~ YEAR + HEIGHTs, gt, family = nbinom2)
out$grouseticks <- list(r2 = r2_list(pm), overdispersion = od_list(pm),
                        glm_loglik = num(logLik(glm(TICKS ~ YEAR + cHEIGHT, gt, family = poisson))),
                        nb = list(loglik = num(logLik(nb)), fixef = num(fixef(nb)$cond), sd = num(attr(VarCorr(nb)$cond$BROOD, "stddev")),
                                  theta = num(sigma(nb)), AIC = num(AIC(nb)), r2 = r2_list(nb),
                                  glm_loglik = num(logLik(nb_glm))))

# --- simulated probit and Gamma-log: R2 of glmmTMB fits (observed-curvature Laplace as glmm_ext; glmer's
# Laplace for non-canonical links and its Gamma scale estimate differ)
pr <- read.csv(file.path(dir, "sim_bern_probit.csv")); pr$g <- factor(pr$g)
ga <- read.csv(file.path(dir, "sim_gamma_log.csv")); ga$g <- factor(ga$g)
# --- glmmTMB Wald intervals (SDs on the log scale): cbpp binomial and grouseticks NB2 (ML fits)
cb_tmb <- glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), cb, family = binomial)
out$wald_tmb <- list(cbpp = ci_list(confint(cb_tmb, method = "wald")), nb = ci_list(confint(nb, method = "wald")))
out$probit <- list(r2 = r2_list(glmmTMB(y ~ x1 + x2 + (1 | g), pr, family = binomial(link = "probit"))))
out$gamma_log <- list(r2 = r2_list(glmmTMB(y ~ x1 + x2 + (1 | g), ga, family = Gamma(link = "log"))))
write_json(out, file.path(dir, "analysis_reference.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
