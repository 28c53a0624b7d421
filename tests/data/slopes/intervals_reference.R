# Reference numbers for tests/test_slopes_intervals.py: lme4 confint() on sleepstudy, random slopes.
# Run from the repository root: Rscript tests/data/slopes/intervals_reference.R
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
d <- read.csv("tests/data/sleepstudy.csv")
d$Subject <- factor(d$Subject)
out <- list()
fits <- list(reml = lmer(Reaction ~ Days + (Days | Subject), d, REML = TRUE),
             ml = lmer(Reaction ~ Days + (Days | Subject), d, REML = FALSE),
             ml_uncorr = lmer(Reaction ~ Days + (Days || Subject), d, REML = FALSE))
for (nm in names(fits)) {
  ci <- confint(fits[[nm]], method = "profile", oldNames = TRUE)
  out[[nm]] <- list(rows = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]))
}
cat(toJSON(out, digits = 10, pretty = TRUE), file = "tests/data/slopes/intervals_reference.json")
print(out)
