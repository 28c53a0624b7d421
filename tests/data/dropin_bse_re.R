# Reference standard errors of the random-intercept variance for test_fitting_statsmodels.py (run from tests/data):
# glmmTMB reports SE(log sigma_u); by the delta method SE(sigma_u^2) = 2 sigma_u^2 SE(log sigma_u).
library(glmmTMB)
library(jsonlite)
out <- list()
ref <- function(name, formula, data, family = gaussian(), REML = FALSE) {
  m <- glmmTMB(formula, data = data, family = family, REML = REML)
  sd_log <- sqrt(diag(vcov(m, full = TRUE)))
  theta <- getME(m, "theta")[1]
  se_log_sd <- sd_log[grep("^theta|Std.Dev|\\(Intercept\\)", names(sd_log))]
  i <- length(fixef(m)$cond) + ifelse(family$family == "gaussian" || family$family == "Gamma", 2, 1)
  se <- unname(sd_log[i])
  s2 <- exp(2 * theta)
  out[[name]] <<- list(var_re = unname(s2), se_log_sd = se, bse_re = unname(2 * s2 * se), llf = as.numeric(logLik(m)),
                       names = names(sd_log))
}
cbpp <- read.csv("cbpp.csv")
ref("cbpp_binomial", cbind(incidence, size - incidence) ~ factor(period) + (1 | herd), cbpp, binomial())
gt <- read.csv("grouseticks.csv")
ref("grouseticks_poisson", TICKS ~ factor(YEAR) + cHEIGHT + (1 | BROOD), gt, poisson())
sl <- read.csv("sleepstudy.csv")
ref("sleepstudy_ri", Reaction ~ Days + (1 | Subject), sl, gaussian(), REML = TRUE)
ref("sleepstudy_ri_ml", Reaction ~ Days + (1 | Subject), sl, gaussian(), REML = FALSE)
write_json(out, "dropin_bse_re.json", auto_unbox = TRUE, digits = NA, pretty = TRUE)
