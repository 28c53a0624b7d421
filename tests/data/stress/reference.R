# Reference fits for tests/stress_multiterm.py -> tests/data/stress/reference.json
# Run from the repository root after `python tests/stress_multiterm.py --data`:  Rscript tests/data/stress/reference.R
# Reads specs.json (data file, lme4 formula, family, REML) and the seeded CSVs here; character columns become
# factors with sorted levels (patsy's order). Per model: lme4 (lmer / glmer / glmer.nb) and glmmTMB: fixef, se,
# loglik, per-term covariance (VarCorr), sigma (Gaussian) / NB theta. The tests never need R.
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})
dir <- "tests/data/stress"
args <- commandArgs(trailingOnly = TRUE)
lopt <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
gopt <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
num <- function(x) unname(as.numeric(x))
named <- function(x) as.list(setNames(as.numeric(x), names(x)))
specs <- fromJSON(file.path(dir, "specs.json"), simplifyVector = FALSE)
covs_lme4 <- function(m) {
  vc <- VarCorr(m)
  lapply(names(vc), function(g) { v <- vc[[g]]; list(group = g, names = colnames(v), cov = unname(as.matrix(v))) })
}
covs_tmb <- function(t) {
  vc <- VarCorr(t)$cond
  lapply(names(vc), function(g) { v <- vc[[g]]; list(group = g, names = colnames(v), cov = unname(matrix(as.numeric(v), nrow(v)))) })
}
capture <- function(expr) {
  w <- character(0); msg <- character(0)
  v <- withCallingHandlers(expr, warning = function(x) { w <<- c(w, conditionMessage(x)); invokeRestart("muffleWarning") },
                           message = function(x) { msg <<- c(msg, conditionMessage(x)); invokeRestart("muffleMessage") })
  list(value = v, warnings = w, messages = msg)
}
out <- list()
old <- file.path(dir, "reference.json")
if (length(args) && file.exists(old)) out <- fromJSON(old, simplifyVector = FALSE)$models
for (name in names(specs)) {
  if (length(args) && !(name %in% args)) next
  s <- specs[[name]]
  d <- read.csv(file.path(dir, s$data), stringsAsFactors = FALSE)
  for (v in names(d)) if (is.character(d[[v]])) d[[v]] <- factor(d[[v]], levels = sort(unique(d[[v]])))
  f <- as.formula(s$formula)
  if (s$family == "gaussian") {
    m <- capture(lmer(f, d, REML = s$reml, control = lopt))
    tm <- tryCatch(capture(glmmTMB(f, d, REML = s$reml)), error = function(e) list(error = conditionMessage(e)))
  } else if (s$family == "nbinom2") {
    m <- capture(glmer.nb(f, d, control = gopt))
    tm <- tryCatch(capture(glmmTMB(f, d, family = nbinom2)), error = function(e) list(error = conditionMessage(e)))
  } else {
    fam <- list(poisson = poisson(), binomial = binomial())[[s$family]]
    m <- capture(glmer(f, d, family = fam, control = gopt))
    tm <- tryCatch(capture(glmmTMB(f, d, family = fam)), error = function(e) list(error = conditionMessage(e)))
  }
  mm <- m$value; tt <- tm$value
  tmb <- if (is.null(tt)) list(loglik = NULL, error = tm$error) else
    list(fixef = named(fixef(tt)$cond), se = named(sqrt(diag(vcov(tt)$cond))), loglik = num(logLik(tt)),
         sigma = sigma(tt), covs = covs_tmb(tt), pdHess = tt$sdr$pdHess, warnings = c(tm$warnings, tm$messages))
  o <- list(data = s$data, formula = s$formula, family = s$family, reml = s$reml,
            lme4 = list(fixef = named(fixef(mm)), se = named(sqrt(diag(as.matrix(vcov(mm))))), loglik = num(logLik(mm)),
                        df = attr(logLik(mm), "df"), theta = num(getME(mm, "theta")), sigma = sigma(mm), covs = covs_lme4(mm),
                        singular = isSingular(mm), warnings = c(m$warnings, m$messages, mm@optinfo$conv$lme4$messages)),
            glmmTMB = tmb)
  if (s$family == "nbinom2") o$lme4$nb_theta <- getME(mm, "glmer.nb.theta")
  cat(name, "lme4", o$lme4$loglik, "glmmTMB", if (is.null(tt)) tm$error else o$glmmTMB$loglik, "\n")
  out[[name]] <- o
}
meta <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")), glmmTMB = as.character(packageVersion("glmmTMB")),
             note = "lme4 se: vcov() (glmer.nb: expected curvature); glmmTMB se: vcov()$cond (full Hessian); glmer logLik is its PIRLS value; covs: VarCorr per term")
writeLines(toJSON(list(meta = meta, models = out), auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"), old)
