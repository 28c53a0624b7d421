# Reference numbers for tests/test_fitting_weights_r.py (run once from the repository root:
#   Rscript tests/data/weights/reference.R
# ). The tests read reference.json written here; they never need R.
# lme4's weights= are glmm_ext's var_weights (Gaussian: residual variance sigma^2 / w; Binomial with a
# proportion response: the number of trials, glmm_ext's weights=). The weight columns are made up and
# deterministic, so the data files stay lme4's public ones.
suppressMessages({library(lme4); library(jsonlite)})
dir <- "tests/data"
num <- function(x) unname(as.numeric(x))
vc <- function(m) {  # per term: sd and correlation matrix, in lme4's order
  v <- VarCorr(m)
  lapply(names(v), function(k) list(group = k, names = colnames(v[[k]]), sd = num(attr(v[[k]], "stddev")),
                                     corr = if (ncol(v[[k]]) > 1) num(attr(v[[k]], "correlation")) else 1))
}
record <- function(m, data_name, formula, weights_note) {
  list(data = data_name, formula = formula, weights = weights_note, REML = isREML(m),
       loglik = num(logLik(m)), fixef = num(fixef(m)), fixef_names = names(fixef(m)),
       se = num(sqrt(diag(as.matrix(vcov(m))))), sigma = num(sigma(m)), varcorr = vc(m),
       nobs = nobs(m), lme4 = as.character(packageVersion("lme4")))
}
out <- list()
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
gctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))

# sleepstudy, one correlated term with random slopes and weights w = 1 + Days %% 3
ss <- read.csv(file.path(dir, "sleepstudy.csv")); ss$Subject <- factor(ss$Subject)
ss$w <- 1 + ss$Days %% 3
for (reml in c(TRUE, FALSE)) {
  m <- lmer(Reaction ~ Days + (1 + Days | Subject), ss, weights = w, REML = reml, control = ctrl)
  out[[paste0("sleep_slope_", if (reml) "reml" else "ml")]] <- record(m, "sleepstudy.csv",
    "Reaction ~ Days + (1 + Days | Subject)", "w = 1 + Days %% 3")
  m <- lmer(Reaction ~ Days + (Days || Subject), ss, weights = w, REML = reml, control = ctrl)
  out[[paste0("sleep_diag_", if (reml) "reml" else "ml")]] <- record(m, "sleepstudy.csv",
    "Reaction ~ Days + (Days || Subject)", "w = 1 + Days %% 3")
}

# Penicillin (lme4), crossed terms, weights w = 1 + (plate index + sample index) %% 3 (factor levels sorted)
pen <- read.csv(file.path(dir, "multiterm", "penicillin.csv"))
pen$plate <- factor(pen$plate); pen$sample <- factor(pen$sample)
pen$w <- 1 + (as.integer(pen$plate) + as.integer(pen$sample)) %% 3
for (reml in c(TRUE, FALSE)) {
  m <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), pen, weights = w, REML = reml, control = ctrl)
  out[[paste0("penicillin_", if (reml) "reml" else "ml")]] <- record(m, "multiterm/penicillin.csv",
    "diameter ~ 1 + (1 | plate) + (1 | sample)", "w = 1 + (plate code + sample code) %% 3, codes 1-based")
}

# cbpp (lme4), Binomial: the proportion with weights = size (the trials) equals cbind(incidence, size - incidence)
cb <- read.csv(file.path(dir, "multiterm", "cbpp.csv"))
cb$herd <- factor(cb$herd); cb$period <- factor(cb$period); cb$obs <- factor(cb$obs)
cb$p <- cb$incidence / cb$size
cb$t <- as.numeric(cb$period) - 2.5
m <- glmer(p ~ period + (1 | herd) + (1 | obs), cb, weights = size, family = binomial, control = gctrl)
m2 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs), cb, family = binomial,
            control = gctrl)
out$cbpp_obs <- record(m, "multiterm/cbpp.csv", "incidence / size ~ period + (1 | herd) + (1 | obs)", "size")
out$cbpp_obs$loglik_cbind <- num(logLik(m2))
m <- glmer(p ~ t + (1 + t | herd), cb, weights = size, family = binomial, control = gctrl)
out$cbpp_slope <- record(m, "multiterm/cbpp.csv", "incidence / size ~ t + (1 + t | herd), t = period - 2.5", "size")
out$cbpp_slope$singular <- isSingular(m)

writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), file.path(dir, "weights", "reference.json"))
