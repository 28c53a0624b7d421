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
public <- list(  # public data sets (the simulated ones come from tests/stress_multiterm.py --data)
  insteval_sub = function() { d <- lme4::InstEval[1:4000, ]
    data.frame(y = d$y, service = paste0("v", d$service), s = paste0("s", d$s), d = paste0("d", d$d),
               dept = sprintf("p%02d", as.integer(as.character(d$dept)))) },
  verbagg = function() { d <- lme4::VerbAgg
    data.frame(r2 = as.integer(d$r2 == "Y"), Anger = d$Anger, Gender = as.character(d$Gender), btype = as.character(d$btype),
               id = sprintf("i%03d", as.integer(as.character(d$id))), item = as.character(d$item)) })
for (key in names(public)) { f <- file.path(dir, paste0(key, ".csv")); if (!file.exists(f)) write.csv(public[[key]](), f, row.names = FALSE) }
source("tests/data/reference_helpers.R")  # covs_lme4, covs_tmb, capture
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
    fam <- list(poisson = poisson(), binomial = binomial(link = if (is.null(s$link)) "logit" else s$link))[[s$family]]
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
  if (!is.null(s$equiv)) {  # the same model with centred random-effect columns: lmer's exact, glmmTMB's Laplace optimum
    fe <- as.formula(s$equiv)
    e <- if (s$family == "gaussian") lmer(fe, d, REML = s$reml, control = lopt) else
      glmmTMB(fe, d, family = list(poisson = poisson(), binomial = binomial(), nbinom2 = nbinom2)[[s$family]])
    if (s$family != "gaussian" && is.na(logLik(e))) e <- glmer(fe, d, family = binomial(), control = gopt)
    fx <- if (inherits(e, "glmmTMB")) fixef(e)$cond else fixef(e)
    V <- as.matrix(if (inherits(e, "glmmTMB")) vcov(e)$cond else vcov(e))
    o$equiv <- list(formula = s$equiv, by = class(e)[1], fixef = named(fx), loglik = num(logLik(e)),
                    vcov = unname(V), vcov_names = colnames(V))
  }
  cat(name, "lme4", o$lme4$loglik, "glmmTMB", if (is.null(tt)) tm$error else o$glmmTMB$loglik, "\n")
  out[[name]] <- o
}
meta <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")), glmmTMB = as.character(packageVersion("glmmTMB")),
             note = "lme4 se: vcov() (glmer.nb: expected curvature); glmmTMB se: vcov()$cond (full Hessian); glmer logLik is its PIRLS value; covs: VarCorr per term")
writeLines(toJSON(list(meta = meta, models = out), auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"), old)
