# Reference numbers for tests/test_inference_intervals.py and tests/test_inference_bounds.py: lme4 confint() on sleepstudy, random slopes.
# Run from the repository root: Rscript tests/data/slopes/intervals_reference.R
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
d <- read.csv("tests/data/sleepstudy.csv")
d$Subject <- factor(d$Subject)
out <- list()
fits <- list(reml = lmer(Reaction ~ Days + (Days | Subject), d, REML = TRUE),
             ml = lmer(Reaction ~ Days + (Days | Subject), d, REML = FALSE),
             ml_uncorr = lmer(Reaction ~ Days + (Days || Subject), d, REML = FALSE))
cbpp <- read.csv("tests/data/cbpp.csv")
cbpp$herd <- factor(cbpp$herd)
cbpp$pnum <- as.numeric(cbpp$period)
fits$cbpp_slope <- glmer(cbind(incidence, size - incidence) ~ pnum + (pnum | herd), cbpp, family = binomial)
sing <- read.csv("tests/data/slopes/sim_singular.csv")
sing$g <- factor(sing$g)
fits$singular_reml <- lmer(y ~ x + (x | g), sing, REML = TRUE)  # boundary fit: lme4 warns while profiling
for (nm in names(fits)) {
  ci <- confint(fits[[nm]], method = "profile", oldNames = TRUE)
  out[[nm]] <- list(rows = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]))
}
cat(toJSON(out, digits = 10, pretty = TRUE), file = "tests/data/slopes/intervals_reference.json")
print(out)

# Wald scale of the variance parameters: glmmTMB's standard errors of log SD (ML fit, theta_ entries)
suppressPackageStartupMessages(library(glmmTMB))
tmb <- glmmTMB(Reaction ~ Days + (Days | Subject), d, REML = FALSE)
V <- vcov(tmb, full = TRUE)
tmb_out <- list(rows = rownames(V), se = unname(sqrt(diag(V))), est = unname(tmb$fit$par))
cat(toJSON(tmb_out, digits = 10, pretty = TRUE), file = "tests/data/slopes/intervals_glmmtmb.json")
print(tmb_out)
