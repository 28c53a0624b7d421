# lme4 / glmmTMB fits of the random-slope reference cases -> reference.json (run from this directory:
#   Rscript reference.R).  Data: ../sleepstudy.csv, ../cbpp.csv, ../grouseticks.csv (public, lme4),
# and the simulated CSVs written by make_data.py.  The package never needs R.
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})
opt <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
gopt <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
sleep <- read.csv("../sleepstudy.csv"); sleep$Subject <- factor(sleep$Subject)
cbpp <- read.csv("../cbpp.csv"); cbpp$herd <- factor(cbpp$herd); cbpp$pnum <- as.numeric(cbpp$period)
grouse <- read.csv("../grouseticks.csv"); grouse$LOCATION <- factor(grouse$LOCATION); grouse$YEAR <- factor(grouse$YEAR)
rd <- function(f) { d <- read.csv(f); d$g <- factor(d$g); d }
sgam <- rd("sim_gamma.csv"); sbs <- rd("sim_binomial_singular.csv"); spq3 <- rd("sim_poisson_q3.csv")
q3 <- rd("sim_q3.csv"); sing <- rd("sim_singular.csv"); sbin <- rd("sim_binomial.csv"); spois <- rd("sim_poisson.csv")

cases <- list(
  list(name = "sleep_reml", data = "sleepstudy.csv", formula = "Reaction ~ Days + (Days | Subject)", family = "gaussian", reml = TRUE, d = sleep),
  list(name = "sleep_ml", data = "sleepstudy.csv", formula = "Reaction ~ Days + (Days | Subject)", family = "gaussian", reml = FALSE, d = sleep),
  list(name = "sleep_diag_reml", data = "sleepstudy.csv", formula = "Reaction ~ Days + (Days || Subject)", family = "gaussian", reml = TRUE, d = sleep),
  list(name = "sleep_slope_only", data = "sleepstudy.csv", formula = "Reaction ~ Days + (0 + Days | Subject)", family = "gaussian", reml = TRUE, d = sleep),
  list(name = "q3_reml", data = "slopes/sim_q3.csv", formula = "y ~ x1 + x2 + (1 + x1 + x2 | g)", family = "gaussian", reml = TRUE, d = q3),
  list(name = "q3_ml", data = "slopes/sim_q3.csv", formula = "y ~ x1 + x2 + (1 + x1 + x2 | g)", family = "gaussian", reml = FALSE, d = q3),
  list(name = "singular_reml", data = "slopes/sim_singular.csv", formula = "y ~ x + (x | g)", family = "gaussian", reml = TRUE, d = sing),
  list(name = "cbpp_slope", data = "cbpp.csv", formula = "cbind(incidence, size - incidence) ~ pnum + (pnum | herd)", family = "binomial", d = cbpp),
  list(name = "grouse_slope", data = "grouseticks.csv", formula = "TICKS ~ YEAR + cHEIGHT + (cHEIGHT | LOCATION)", family = "poisson", d = grouse),
  list(name = "sim_binomial", data = "slopes/sim_binomial.csv", formula = "y ~ x + (x | g)", family = "binomial", d = sbin),
  list(name = "sim_binomial_diag", data = "slopes/sim_binomial.csv", formula = "y ~ x + (x || g)", family = "binomial", d = sbin),
  list(name = "sim_poisson", data = "slopes/sim_poisson.csv", formula = "y ~ x + (x | g)", family = "poisson", d = spois),
  list(name = "sim_poisson_slope_only", data = "slopes/sim_poisson.csv", formula = "y ~ x + (0 + x | g)", family = "poisson", d = spois),
  list(name = "sim_probit", data = "slopes/sim_binomial.csv", formula = "y ~ x + (x | g)", family = "binomial_probit", d = sbin),
  list(name = "sim_gamma", data = "slopes/sim_gamma.csv", formula = "y ~ x + (x | g)", family = "gamma_log", d = sgam),
  list(name = "sim_binomial_singular", data = "slopes/sim_binomial_singular.csv", formula = "y ~ x + (x | g)", family = "binomial", d = sbs),
  list(name = "sim_poisson_q3", data = "slopes/sim_poisson_q3.csv", formula = "y ~ x1 + x2 + (1 + x1 + x2 | g)", family = "poisson", d = spq3)
)
families <- list(binomial = binomial(), poisson = poisson(), binomial_probit = binomial(link = "probit"),
                 gamma_log = Gamma(link = "log"))

varcorr <- function(vc) { m <- as.matrix(vc[[1]]); attributes(m)[c("stddev", "correlation")] <- NULL; m }
out <- list()
for (cs in cases) {
  f <- as.formula(cs$formula)
  if (cs$family == "gaussian") {
    m <- lmer(f, cs$d, REML = cs$reml, control = opt)
    tm <- glmmTMB(f, cs$d, REML = cs$reml)
  } else {
    fam <- families[[cs$family]]
    m <- glmer(f, cs$d, family = fam, control = gopt)
    tm <- glmmTMB(f, cs$d, family = fam)
  }
  re <- ranef(m)[[1]]
  rdf <- as.data.frame(ranef(m, condVar = TRUE))
  csd <- sapply(colnames(re), function(k) rdf$condsd[rdf$term == k][match(rownames(re), rdf$grp[rdf$term == k])])
  csd <- matrix(csd, nrow = nrow(re))
  vc <- VarCorr(m)
  cov <- if (length(vc) == 1) as.matrix(vc[[1]]) else as.matrix(Matrix::bdiag(lapply(vc, as.matrix)))
  terms <- unlist(lapply(vc, function(v) colnames(v)))
  dimnames(cov) <- list(terms, terms)
  tcov <- VarCorr(tm)$cond
  tcov <- if (length(tcov) == 1) as.matrix(tcov[[1]]) else as.matrix(Matrix::bdiag(lapply(tcov, as.matrix)))
  out[[cs$name]] <- list(
    data = cs$data, formula = cs$formula, family = cs$family, reml = if (is.null(cs$reml)) FALSE else cs$reml,
    lme4 = list(loglik = as.numeric(logLik(m)), fe = as.list(fixef(m)), se = as.list(sqrt(diag(as.matrix(vcov(m))))),
                cov_re = unname(cov[terms, terms]), terms = terms, sigma = sigma(m), singular = isSingular(m),
                ranef = unname(as.matrix(re[, terms, drop = FALSE])), ranef_groups = rownames(re),
                cond_sd = unname(csd[, match(terms, colnames(re)), drop = FALSE])),
    glmmTMB = list(loglik = as.numeric(logLik(tm)), fe = as.list(fixef(tm)$cond), cov_re = unname(tcov),
                   sigma = sigma(tm)))
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "reference.json")
