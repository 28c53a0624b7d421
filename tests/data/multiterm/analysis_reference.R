# Reference numbers for the analysis of fits with several random-effect terms (intervals, R²).
# Run from the repository root:  Rscript tests/data/multiterm/analysis_reference.R
# Writes tests/data/multiterm/analysis_reference.json; the tests read the json and never need R.
suppressMessages({library(lme4); library(performance); library(insight); library(jsonlite)})
dir <- "tests/data/multiterm"
rd <- function(f, factors) {
  d <- read.csv(file.path(dir, f), stringsAsFactors = FALSE)
  for (v in factors) d[[v]] <- factor(d[[v]])
  d
}
pen <- rd("penicillin.csv", c("plate", "sample"))
oats <- rd("oats.csv", c("Block", "Variety"))
grouse <- rd("grouseticks.csv", c("YEAR", "BROOD", "INDEX", "LOCATION"))
cbpp <- rd("cbpp.csv", c("period", "herd", "obs"))

ci_list <- function(ci) {
  lapply(setNames(seq_len(nrow(ci)), rownames(ci)), function(i) unname(as.numeric(ci[i, ])))
}
profile_ci <- function(m) {
  # confint's default grid, and a finer profile (smaller steps) read by the same spline
  fine <- confint(profile(m, signames = FALSE, delta = qnorm(0.9875) / 40, maxpts = 400), level = 0.95)
  list(default = ci_list(confint(m, method = "profile", oldNames = FALSE, level = 0.95)),
       fine = ci_list(fine),
       wald_fixef = ci_list(confint(m, method = "Wald", level = 0.95)[names(fixef(m)), , drop = FALSE]),
       loglik = as.numeric(logLik(m)), fixef = as.list(fixef(m)),
       varcorr = as.data.frame(VarCorr(m))[, c("grp", "var1", "var2", "vcov", "sdcor")])
}
r2_entry <- function(m, approx) {
  r <- suppressWarnings(r2_nakagawa(m, approximation = approx))
  v <- suppressWarnings(get_variance(m, approximation = approx))
  list(approximation = approx, R2_conditional = unname(r$R2_conditional), R2_marginal = unname(r$R2_marginal),
       var_fixed = v$var.fixed, var_random = v$var.random, var_distribution = v$var.distribution,
       var_intercept = as.list(v$var.intercept))
}

out <- list(meta = list(lme4 = as.character(packageVersion("lme4")),
                        performance = as.character(packageVersion("performance")),
                        insight = as.character(packageVersion("insight")), R = R.version.string,
                        notes = paste("profile: confint(method='profile', oldNames=FALSE) rows .sig01.. in lme4's",
                                      "order (sd_(Intercept)|term, sigma, fixed effects); 'fine' = the profile with",
                                      "delta = qnorm(0.9875)/40. r2: performance::r2_nakagawa and insight::get_variance (these versions",
                                      "have the lognormal approximation only, with lambda = exp(null_fixef) of the",
                                      "intercept-only model; an observation-level term's variance goes to the residual).")))
m_pen_reml <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), pen)
m_pen_ml <- update(m_pen_reml, REML = FALSE)
m_oats_reml <- lmer(yield ~ nitro + (1 | Block / Variety), oats)
m_oats_ml <- update(m_oats_reml, REML = FALSE)
out$profile <- list(
  penicillin_reml = c(list(py_formula = "diameter ~ 1 + (1|plate) + (1|sample)", data = "penicillin.csv", reml = TRUE),
                      profile_ci(m_pen_reml)),
  penicillin_ml = c(list(py_formula = "diameter ~ 1 + (1|plate) + (1|sample)", data = "penicillin.csv", reml = FALSE),
                    profile_ci(m_pen_ml)),
  oats_nested_reml = c(list(py_formula = "yield ~ nitro + (1|Block/Variety)", data = "oats.csv", reml = TRUE),
                       profile_ci(m_oats_reml)),
  oats_nested_ml = c(list(py_formula = "yield ~ nitro + (1|Block/Variety)", data = "oats.csv", reml = FALSE),
                     profile_ci(m_oats_ml)))

m_grouse <- glmer(TICKS ~ YEAR + HEIGHTc + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION), grouse, family = poisson)
m_grouse_null <- glmer(TICKS ~ 1 + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION), grouse, family = poisson)
m_cbpp <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs), cbpp, family = binomial)
out$r2 <- list(
  grouse_poisson = list(py_formula = "TICKS ~ C(YEAR) + HEIGHTc + (1|BROOD) + (1|INDEX) + (1|LOCATION)",
                        data = "grouseticks.csv", family = "poisson", loglik = as.numeric(logLik(m_grouse)),
                        lognormal = r2_entry(m_grouse, "lognormal"),
                        null_fixef = unname(fixef(m_grouse_null)), null_loglik = as.numeric(logLik(m_grouse_null)),
                        null_theta = unname(getME(m_grouse_null, "theta"))),
  cbpp_obs = list(py_formula = "incidence + I(size - incidence) ~ C(period) + (1|herd) + (1|obs)",
                  data = "cbpp.csv", family = "binomial", loglik = as.numeric(logLik(m_cbpp)),
                  theoretical = r2_entry(m_cbpp, "lognormal")),
  penicillin_reml = list(py_formula = "diameter ~ 1 + (1|plate) + (1|sample)", data = "penicillin.csv",
                         family = "gaussian", reml = TRUE, gaussian = r2_entry(m_pen_reml, "lognormal")),
  oats_nested_reml = list(py_formula = "yield ~ nitro + (1|Block/Variety)", data = "oats.csv",
                          family = "gaussian", reml = TRUE, gaussian = r2_entry(m_oats_reml, "lognormal")))
out$profile$cbpp_obs <- c(list(py_formula = "incidence + I(size - incidence) ~ C(period) + (1|herd) + (1|obs)",
                               data = "cbpp.csv", family = "binomial"), profile_ci(m_cbpp))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(dir, "analysis_reference.json"))
cat("done\n")
