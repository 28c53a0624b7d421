# Reference fits for models with several random-effect terms (crossed, nested, same factor twice)
# -> tests/data/multiterm/reference.json.  Run from the repository root:
#   Rscript tests/data/multiterm/reference.R            # every model
#   Rscript tests/data/multiterm/reference.R penicillin_reml sleep_split_ml ...   # only these (merged into the json)
# The data sets (public, from lme4 and nlme) are written to CSVs in this directory first, read back and fitted
# from the CSVs, so the stored numbers belong to exactly the stored data.  The package's tests never need R.
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})
dir <- "tests/data/multiterm"
json_file <- file.path(dir, "reference.json")
args <- commandArgs(trailingOnly = TRUE)
lopt <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
gopt <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
num <- function(x) unname(as.numeric(x))
named <- function(x) as.list(setNames(as.numeric(x), names(x)))

# ---------------------------------------------------------------- data sets
# key -> list(csv, df (R's data, only the columns needed), py = patsy spelling of each factor used as a fixed effect)
lv <- function(x) paste0("[", paste0("'", x, "'", collapse = ", "), "]")
gt <- lme4::grouseticks
gt$HEIGHTc <- gt$HEIGHT - mean(gt$HEIGHT)     # centred over all 403 rows (mean 462.2407); equals lme4's cHEIGHT
cb <- lme4::cbpp; cb$obs <- factor(seq_len(nrow(cb)))
va <- lme4::VerbAgg; va$r2 <- as.integer(va$r2 == "Y")
oats <- as.data.frame(nlme::Oats); oats$Block <- factor(as.character(oats$Block), levels = levels(nlme::Oats$Block))
datasets <- list(
  penicillin = list(csv = "penicillin.csv", df = lme4::Penicillin[, c("diameter", "plate", "sample")], py = list()),
  sleepstudy = list(csv = "sleepstudy.csv", df = lme4::sleepstudy[, c("Reaction", "Days", "Subject")], py = list()),
  oats = list(csv = "oats.csv", df = oats[, c("yield", "nitro", "Block", "Variety")], py = list()),
  grouseticks = list(csv = "grouseticks.csv", df = gt[, c("TICKS", "YEAR", "HEIGHT", "HEIGHTc", "BROOD", "INDEX", "LOCATION")],
                     py = list(YEAR = "C(YEAR)")),
  cbpp = list(csv = "cbpp.csv", df = cb[, c("incidence", "size", "period", "herd", "obs")], py = list(period = "C(period)")),
  verbagg = list(csv = "verbagg.csv", df = va[, c("r2", "btype", "situ", "mode", "Gender", "Anger", "id", "item")],
                 py = list(btype = "C(btype)", situ = "C(situ)", mode = "C(mode, levels=['want', 'do'])", Gender = "C(Gender)")),
  # 73,421 rows: kept with the benchmarks (gzip), not with the test data
  insteval = list(csv = "insteval.csv.gz", path = "benchmarks/data/insteval.csv.gz",
                  df = lme4::InstEval[, c("y", "service", "s", "d", "dept")], py = list(service = "C(service)"))
)
# write each CSV, read it back with the factor levels in R's order (stored in the json as data_levels)
load_data <- function(key) {
  ds <- datasets[[key]]; df <- ds$df
  facs <- names(df)[vapply(df, is.factor, TRUE)]
  path <- if (is.null(ds$path)) file.path(dir, ds$csv) else ds$path
  out <- df; for (v in facs) out[[v]] <- as.character(out[[v]])
  if (endsWith(path, ".gz")) { dir.create(dirname(path), showWarnings = FALSE, recursive = TRUE)
    con <- gzfile(path, "w"); write.csv(out, con, row.names = FALSE); close(con) }
  else write.csv(out, path, row.names = FALSE)
  back <- read.csv(path, colClasses = setNames(rep("character", length(facs)), facs))
  for (v in facs) back[[v]] <- factor(back[[v]], levels = levels(df[[v]]))
  stopifnot(isTRUE(all.equal(back, df, check.attributes = FALSE)))
  list(df = back, csv = if (is.null(ds$path)) ds$csv else ds$path, py = ds$py, levels = lapply(setNames(facs, facs), function(v) levels(df[[v]])))
}

# R's fixed-effect column names -> patsy's ("(Intercept)" -> "Intercept", "YEAR96" -> "C(YEAR)[T.96]", a:b -> a:b)
py_names <- function(cn, d) {
  one <- function(p) {
    if (p %in% names(d$df) && !is.factor(d$df[[p]])) return(p)
    for (v in names(d$py)) {
      lev <- substring(p, nchar(v) + 1)
      if (startsWith(p, v) && lev %in% d$levels[[v]]) return(paste0(d$py[[v]], "[T.", lev, "]"))
    }
    stop("no patsy name for ", p)
  }
  vapply(cn, function(n) if (n == "(Intercept)") "Intercept" else paste(vapply(strsplit(n, ":")[[1]], one, ""), collapse = ":"), "")
}

# ---------------------------------------------------------------- extraction
vc_terms <- function(vc, sc = NULL) {
  out <- lapply(seq_along(vc), function(i) {
    v <- vc[[i]]; cr <- attr(v, "correlation"); dimnames(cr) <- NULL
    list(group = names(vc)[i], names = as.list(colnames(v)), variance = as.list(num(diag(as.matrix(v)))),
         sd = as.list(num(attr(v, "stddev"))), corr = cr)
  })
  if (!is.null(sc)) out[[length(out) + 1]] <- list(group = "Residual", names = list(), variance = list(sc^2),
                                                   sd = list(sc), corr = NULL)
  out
}
collect <- function(expr) {  # value, warnings and messages of a fit
  w <- character(); msg <- character()
  val <- withCallingHandlers(expr, warning = function(c) { w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning") },
                             message = function(c) { msg <<- c(msg, conditionMessage(c)); invokeRestart("muffleMessage") })
  list(value = val, warnings = as.list(w), messages = as.list(msg))
}

# conditional modes per random-effect term, with conditional SDs sqrt(diag(s^2 Lambda A^-1 Lambda')), A = L L'
# (lme4's condVar: beta held at its estimate, PIRLS weights at the optimum for a GLMM), checked against ranef()
re_terms <- function(m) {
  cnms <- getME(m, "cnms"); Gp <- getME(m, "Gp"); b <- getME(m, "b"); fl <- getME(m, "flist")
  Lt <- getME(m, "Lambdat"); X <- Matrix::solve(getME(m, "L"), Lt, system = "A")
  cvar <- sigma(m)^2 * Matrix::colSums(Lt * X)
  terms <- lapply(seq_along(cnms), function(i) {
    k <- length(cnms[[i]]); idx <- (Gp[i] + 1):Gp[i + 1]; fac <- names(cnms)[i]
    list(group = fac, names = as.list(cnms[[i]]), levels = as.list(levels(fl[[fac]])),
         values = matrix(b[idx], ncol = k, byrow = TRUE), cond_sd = matrix(sqrt(cvar[idx]), ncol = k, byrow = TRUE))
  })
  # the same numbers through ranef(condVar = TRUE)
  rdf <- tryCatch(as.data.frame(ranef(m, condVar = TRUE)), error = function(e) NULL)
  dv <- ds <- 0
  for (t in terms) for (j in seq_along(t$names)) {
    r <- rdf[rdf$grpvar == t$group & rdf$term == t$names[[j]], ]
    r <- r[match(unlist(t$levels), as.character(r$grp)), ]
    dv <- max(dv, abs(r$condval - t$values[, j])); ds <- max(ds, abs(r$condsd - t$cond_sd[, j]))
  }
  list(terms = terms, check_vs_ranef = list(max_abs_diff_values = dv, max_abs_diff_cond_sd = ds))
}

lme4_out <- function(fit, d, ranef = TRUE) {
  m <- fit$value; glmm <- !isLMM(m); reml <- isREML(m)
  ll <- logLik(m); v <- as.matrix(vcov(m)); th <- getME(m, "theta")
  o <- list(
    fixef = named(fixef(m)), se = named(setNames(sqrt(diag(v)), names(fixef(m)))), vcov = unname(v),
    theta = named(th), varcorr = vc_terms(VarCorr(m), if (glmm) NULL else sigma(m)),
    varcorr_df = lapply(split(as.data.frame(VarCorr(m)), seq_len(nrow(as.data.frame(VarCorr(m))))),
                        function(r) list(grp = r$grp, var1 = r$var1, var2 = if (is.na(r$var2)) NULL else r$var2,
                                         vcov = r$vcov, sdcor = r$sdcor)),
    sigma = sigma(m), loglik = num(ll), df = attr(ll, "df"), nobs = nobs(m), AIC = AIC(m), BIC = BIC(m),
    singular = isSingular(m), devcomp_cmp = named(getME(m, "devcomp")$cmp),
    optimizer_messages = as.list(m@optinfo$conv$lme4$messages), warnings = fit$warnings, messages = fit$messages)
  names(o$varcorr_df) <- NULL
  if (reml) { o$REMLcrit <- REMLcrit(m); o$loglik_ml_at_reml <- num(logLik(m, REML = FALSE)) }
  else o$deviance <- if (glmm) -2 * num(ll) else deviance(m)
  if (glmm) {
    vr <- collect(vcov(m, use.hessian = FALSE))
    o$se_rx <- named(setNames(sqrt(diag(as.matrix(vr$value))), names(fixef(m))))
    o$se_rx_warnings <- vr$warnings
    o$deviance_glmer <- deviance(m)  # lme4's deviance() of a glmer fit (see notes)
    o$nAGQ <- m@devcomp$dims[["nAGQ"]]
  }
  if (ranef) o$ranef <- re_terms(m)
  o
}

tmb_out <- function(fit, ranef = FALSE) {
  tm <- fit$value; ll <- logLik(tm); fe <- fixef(tm); v <- vcov(tm)
  o <- list(fixef = named(fe$cond), se = named(setNames(sqrt(diag(v$cond)), names(fe$cond))),
            varcorr = vc_terms(VarCorr(tm)$cond, if (family(tm)$family == "gaussian") sigma(tm) else NULL),
            sigma = sigma(tm), loglik = num(ll), loglik_objective = -tm$fit$objective, df = attr(ll, "df"), AIC = AIC(tm), BIC = BIC(tm),
            pdHess = tm$sdr$pdHess, convergence = tm$fit$convergence, optimizer_message = tm$fit$message,
            warnings = fit$warnings, messages = fit$messages)
  if (length(fe$zi)) { o$fixef_zi <- named(fe$zi); o$se_zi <- named(setNames(sqrt(diag(v$zi)), names(fe$zi))) }
  if (length(fe$disp)) o$fixef_disp <- named(fe$disp)
  # every parameter's SE (names as glmmTMB's: 'zi~', 'd~' for log dispersion, 'theta_' for log SDs / correlations)
  vf <- tryCatch(vcov(tm, full = TRUE), error = function(e) NULL)
  if (!is.null(vf)) { dv <- diag(vf); dv[dv < 0] <- NA; o$se_full <- named(setNames(sqrt(dv), rownames(vf))) }  # null: no SE
  o
}

# lme4's Laplace log-likelihood at glmmTMB's estimates (scalar intercept terms: theta = SD), to compare optima
tmb_theta <- function(m, tm) {  # glmmTMB's SDs in lme4's term order (scalar terms only)
  sds <- vapply(VarCorr(tm$value)$cond, function(v) num(attr(v, "stddev")), 0)
  num(sds[names(getME(m, "cnms"))])
}
laplace_at <- function(m, tm) -0.5 * update(m, devFunOnly = TRUE)(c(tmb_theta(m, tm), num(fixef(tm$value)$cond)))

# An independent Laplace log-likelihood (every constant): Newton on the conditional modes to |step| < 1e-12 with
# the observed curvature, log det by Cholesky; theta in lme4's order (relative covariance factors), nb = NB2 size.
laplace_exact <- function(m, beta, theta, nb = NULL) {
  X <- getME(m, "X"); Zt <- getME(m, "Zt"); Lt <- getME(m, "Lambdat"); Lt@x <- theta[getME(m, "Lind")]
  A <- Lt %*% Zt; y <- m@resp$y; w <- m@resp$weights; eta0 <- num(X %*% beta + m@resp$offset)
  fam <- if (!is.null(nb)) "nb2" else family(m)$family
  fns <- function(eta) {  # conditional log-density per row and its first two derivatives in eta
    if (fam == "binomial") { mu <- plogis(eta); k <- round(y * w)
      list(l = dbinom(k, w, mu, log = TRUE), d1 = k - w * mu, d2 = -w * mu * (1 - mu)) }
    else if (fam == "poisson") { mu <- exp(eta); list(l = dpois(y, mu, log = TRUE), d1 = y - mu, d2 = -mu) }
    else { mu <- exp(eta); list(l = dnbinom(y, size = nb, mu = mu, log = TRUE), d1 = nb * (y - mu) / (mu + nb),
                                 d2 = -nb * mu * (y + nb) / (mu + nb)^2) }
  }
  obj <- function(u) sum(fns(eta0 + num(Matrix::crossprod(A, u)))$l) - sum(u^2) / 2
  u <- rep(0, nrow(A))
  for (it in 1:200) {
    f <- fns(eta0 + num(Matrix::crossprod(A, u)))
    H <- Matrix::tcrossprod(A %*% Matrix::Diagonal(x = sqrt(-f$d2))) + Matrix::Diagonal(nrow(A))
    step <- num(Matrix::solve(H, num(A %*% f$d1) - u))
    t <- 1; o0 <- obj(u); while (obj(u + t * step) < o0 - 1e-12 && t > 1e-8) t <- t / 2
    u <- u + t * step
    if (max(abs(step)) < 1e-12) break
  }
  f <- fns(eta0 + num(Matrix::crossprod(A, u)))
  H <- Matrix::tcrossprod(A %*% Matrix::Diagonal(x = sqrt(-f$d2))) + Matrix::Diagonal(nrow(A))
  sum(f$l) - sum(u^2) / 2 - 0.5 * num(Matrix::determinant(H, logarithm = TRUE)$modulus)
}

# ---------------------------------------------------------------- models
fam <- list(gaussian = gaussian(), binomial = binomial(), poisson = poisson())
M <- function(name, data, formula, py, family = "gaussian", reml = NULL, nagq = NULL, tmb = TRUE, ranef = TRUE,
              note = NULL)
  list(name = name, data = data, formula = formula, py = py, family = family, reml = reml, nagq = nagq, tmb = tmb,
       ranef = ranef, note = note)
models <- list(
  M("penicillin_reml", "penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", "diameter ~ 1 + (1|plate) + (1|sample)", reml = TRUE),
  M("penicillin_ml", "penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", "diameter ~ 1 + (1|plate) + (1|sample)", reml = FALSE),
  # two terms on one grouping factor (uncorrelated intercept and slope), three spellings; the correlated one as a check
  M("sleep_split_reml", "sleepstudy", "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", "Reaction ~ Days + (1|Subject) + (0 + Days|Subject)", reml = TRUE),
  M("sleep_split_ml", "sleepstudy", "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", "Reaction ~ Days + (1|Subject) + (0 + Days|Subject)", reml = FALSE),
  M("sleep_dbar_reml", "sleepstudy", "Reaction ~ Days + (Days || Subject)", "Reaction ~ Days + (Days||Subject)", reml = TRUE),
  M("sleep_dbar_ml", "sleepstudy", "Reaction ~ Days + (Days || Subject)", "Reaction ~ Days + (Days||Subject)", reml = FALSE),
  M("sleep_corr_reml", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "Reaction ~ Days + (Days|Subject)", reml = TRUE),
  M("sleep_corr_ml", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "Reaction ~ Days + (Days|Subject)", reml = FALSE),
  # nested: (1 | Block/Variety) is (1 | Block) + (1 | Block:Variety) (lme4 names the second term Variety:Block)
  M("oats_nested_reml", "oats", "yield ~ nitro + (1 | Block/Variety)", "yield ~ nitro + (1|Block/Variety)", reml = TRUE),
  M("oats_nested_ml", "oats", "yield ~ nitro + (1 | Block/Variety)", "yield ~ nitro + (1|Block/Variety)", reml = FALSE),
  M("oats_crossed_reml", "oats", "yield ~ nitro + (1 | Block) + (1 | Block:Variety)", "yield ~ nitro + (1|Block) + (1|Block:Variety)", reml = TRUE),
  M("oats_crossed_ml", "oats", "yield ~ nitro + (1 | Block) + (1 | Block:Variety)", "yield ~ nitro + (1|Block) + (1|Block:Variety)", reml = FALSE),
  M("oats_slope_ml", "oats", "yield ~ nitro + (nitro | Block) + (1 | Block:Variety)", "yield ~ nitro + (nitro|Block) + (1|Block:Variety)", reml = FALSE),
  # GLMMs, Laplace (nAGQ = 1) and nAGQ = 0
  M("grouse_poisson", "grouseticks", "TICKS ~ YEAR + HEIGHTc + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
    "TICKS ~ C(YEAR) + HEIGHTc + (1|BROOD) + (1|INDEX) + (1|LOCATION)", family = "poisson", nagq = 1),
  M("grouse_poisson_nagq0", "grouseticks", "TICKS ~ YEAR + HEIGHTc + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
    "TICKS ~ C(YEAR) + HEIGHTc + (1|BROOD) + (1|INDEX) + (1|LOCATION)", family = "poisson", nagq = 0, tmb = FALSE),
  M("cbpp_obs", "cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | obs)",
    "incidence + I(size - incidence) ~ C(period) + (1|herd) + (1|obs)", family = "binomial", nagq = 1),
  M("verbagg", "verbagg", "r2 ~ btype + situ + mode + Gender + Anger + (1 | id) + (1 | item)",
    "r2 ~ C(btype) + C(situ) + C(mode, levels=['want', 'do']) + C(Gender) + Anger + (1|id) + (1|item)", family = "binomial", nagq = 1,
    note = "r2 = 1 for lme4's VerbAgg$r2 == 'Y'"),
  M("verbagg_nagq0", "verbagg", "r2 ~ btype + situ + mode + Gender + Anger + (1 | id) + (1 | item)",
    "r2 ~ C(btype) + C(situ) + C(mode, levels=['want', 'do']) + C(Gender) + Anger + (1|id) + (1|item)", family = "binomial", nagq = 0,
    tmb = FALSE, note = "r2 = 1 for lme4's VerbAgg$r2 == 'Y'"),
  # negative binomial (variance mu + mu^2/theta): glmmTMB nbinom2, and lme4's glmer.nb as a second anchor
  M("grouse_nbinom2", "grouseticks", "TICKS ~ YEAR + HEIGHTc + (1 | BROOD) + (1 | LOCATION)",
    "TICKS ~ C(YEAR) + HEIGHTc + (1|BROOD) + (1|LOCATION)", family = "nbinom2", nagq = 1,
    note = "glmmTMB sigma = theta (NB2 size, variance mu + mu^2/theta), fixef_disp = log(theta); lme4 = glmer.nb (theta in lme4$nb_theta); glmer.nb's Laplace uses the expected (Fisher) curvature of this non-canonical model, so its loglik is not laplace_exact's"),
  # large crossed: numbers and fit times only (data in benchmarks/data/insteval.csv.gz, path relative to the repo root)
  M("insteval_ml", "insteval", "y ~ service + (1 | s) + (1 | d) + (1 | dept)", "y ~ C(service) + (1|s) + (1|d) + (1|dept)",
    reml = FALSE, ranef = FALSE, note = "time_seconds: elapsed system.time() of lmer and glmmTMB on a shared 2-core machine")
)
names(models) <- vapply(models, `[[`, "", "name")

fit_one <- function(s) {
  d <- load_data(s$data); f <- as.formula(s$formula); df <- d$df
  cat(s$name, "\n")
  if (s$family == "gaussian") {
    t1 <- system.time(m <- collect(lmer(f, df, REML = s$reml, control = lopt)))[["elapsed"]]
    t2 <- system.time(tm <- if (s$tmb) collect(glmmTMB(f, df, REML = s$reml)) else NULL)[["elapsed"]]
    times <- list(lme4 = t1, glmmTMB = t2)
  } else if (s$family == "nbinom2") {
    m <- collect(glmer.nb(f, df, control = gopt))
    tm <- collect(glmmTMB(f, df, family = nbinom2))
  } else {
    m <- collect(glmer(f, df, family = fam[[s$family]], nAGQ = s$nagq, control = gopt))
    tm <- if (s$tmb) collect(glmmTMB(f, df, family = fam[[s$family]])) else NULL
  }
  X <- getME(m$value, "X")
  o <- list(data = d$csv, data_levels = d$levels, formula = s$formula, py_formula = s$py, family = s$family,
            link = if (s$family == "nbinom2") "log" else fam[[s$family]]$link, reml = if (is.null(s$reml)) NULL else s$reml, nagq = s$nagq,
            lme4 = lme4_out(m, d, s$ranef))
  o$fixef_py_names <- as.list(setNames(py_names(colnames(X), d), colnames(X)))
  o$X_colsums <- named(colSums(X))
  if (s$family == "nbinom2") o$lme4$nb_theta <- getME(m$value, "glmer.nb.theta")
  if (s$family != "gaussian") o$lme4$laplace_exact <- laplace_exact(m$value, fixef(m$value), getME(m$value, "theta"),
                                                                    if (s$family == "nbinom2") o$lme4$nb_theta)
  if (!is.null(tm)) {
    o$glmmTMB <- tmb_out(tm)
    if (s$family != "gaussian") o$glmmTMB$laplace_exact <- laplace_exact(m$value, num(fixef(tm$value)$cond), tmb_theta(m$value, tm),
                                                                         if (s$family == "nbinom2") sigma(tm$value))
    if (s$family %in% c("binomial", "poisson") && identical(s$nagq, 1)) o$lme4$loglik_laplace_at_glmmTMB <- laplace_at(m$value, tm)
  }
  if (!is.null(s$note)) o$note <- s$note
  if (s$name == "insteval_ml") o$time_seconds <- times
  o
}

meta <- list(
  R = R.version.string, lme4 = as.character(packageVersion("lme4")), glmmTMB = as.character(packageVersion("glmmTMB")),
  Matrix = as.character(packageVersion("Matrix")),
  control = "lmer/glmer: optimizer bobyqa, maxfun 1e5; glmmTMB defaults",
  notes = list(
    "Names: lme4 names throughout (fixef '(Intercept)', 'YEAR96'); fixef_py_names maps them to patsy's for py_formula.",
    "loglik carries every normalising constant (logLik()); for REML fits it is the REML log-likelihood (-REMLcrit/2); loglik_ml_at_reml is the ML log-likelihood at the REML estimates.",
    "glmer with nAGQ = 1: loglik is the Laplace value at lme4's estimates, with the conditional modes from PIRLS (lme4's tolerance); lme4 may stop short of the optimum: loglik_laplace_at_glmmTMB is lme4's Laplace value at glmmTMB's estimates.",
    "laplace_exact (GLMMs): the Laplace log-likelihood, every constant, recomputed at that fit's estimates by this script's own Newton iteration on the conditional modes (|step| < 1e-12, observed curvature; the same as the expected one for canonical links) and a Cholesky log-determinant, independent of lme4's PIRLS and glmmTMB's inner tolerance.",
    "glmer with nAGQ = 0: beta is the PIRLS value for each theta (only theta is optimised); loglik is the Laplace value at that point.",
    "deviance_glmer is lme4's deviance() for a glmer fit; deviance is -2 loglik for glmer and lmer-ML fits.",
    "se: sqrt(diag(vcov())) (lme4 default: for glmer the finite-difference Hessian in (theta, beta)); se_rx: vcov(use.hessian = FALSE).",
    "theta: getME(m, 'theta'), the relative Cholesky factors (SD / sigma for Gaussian, SD for GLMMs), lme4 order.",
    "varcorr: per term (R group name, column names, variances, SDs, correlation matrix) + Residual for Gaussian; varcorr_df is as.data.frame(VarCorr(m)).",
    "ranef.terms: per random-effect term, values[level, column] = conditional modes (getME(m, 'b')), cond_sd = sqrt(diag(sigma^2 Lambda (L L')^-1 Lambda')) with beta held fixed (lme4's condVar); check_vs_ranef compares with ranef(condVar = TRUE).",
    "glmmTMB: loglik is logLik() (NA when the Hessian is not positive definite); loglik_objective = -fit$objective, the optimiser's value (the REML log-likelihood for REML fits); se_full from vcov(full = TRUE).",
    "lme4 orders a model's random-effect terms by decreasing number of levels (theta, varcorr, ranef.terms follow lme4's order); glmmTMB keeps the formula's order.",
    "X_colsums: column sums of lme4's fixed-effect model matrix, to check a patsy design against."
  ))

old <- if (length(args) && file.exists(json_file)) fromJSON(json_file, simplifyVector = FALSE) else list(models = list())
todo <- if (length(args)) args else names(models)
bad <- setdiff(todo, names(models)); if (length(bad)) stop("unknown model(s): ", paste(bad, collapse = ", "))
res <- old$models
for (n in todo) {
  res[[n]] <- fit_one(models[[n]])
  res <- res[intersect(c(names(models), names(res)), names(res))]   # keep the script's order
  writeLines(toJSON(list(meta = meta, models = res), auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"), json_file)
}
