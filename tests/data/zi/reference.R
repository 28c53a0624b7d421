# Reference fits for zero-inflated, hurdle and dispersion-model count GLMMs (glmmTMB) -> tests/data/zi/reference.json.
# Run from the repository root:
#   Rscript tests/data/zi/reference.R                    # every model
#   Rscript tests/data/zi/reference.R sal_zip_full ...   # only these (merged into the json)
# Data: glmmTMB's Salamanders and Owls, lme4's sleepstudy (public), written to CSVs here and fitted from the CSVs.
# Each fit's log-likelihood is recomputed at glmmTMB's estimates by this script's own Laplace approximation and
# adaptive Gauss-Hermite quadrature (one scalar random intercept: the likelihood factorises by group).
# The package's tests never need R.
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})
dir <- "tests/data/zi"
json_file <- file.path(dir, "reference.json")
args <- commandArgs(trailingOnly = TRUE)
num <- function(x) unname(as.numeric(x))
named <- function(x) as.list(setNames(as.numeric(x), names(x)))

# ---------------------------------------------------------------- data sets
sal <- glmmTMB::Salamanders; sal$site <- factor(as.character(sal$site), levels = levels(sal$site))
owls <- glmmTMB::Owls; owls$logBroodSize <- log(owls$BroodSize)
lvs <- function(x) paste0("[", paste0("'", levels(x), "'", collapse = ", "), "]")
datasets <- list(
  salamanders = list(csv = "salamanders.csv", df = sal[, c("count", "spp", "mined", "site")],
                     py = list(spp = paste0("C(spp, levels=", lvs(sal$spp), ")"), mined = "C(mined, levels=['yes', 'no'])")),
  owls = list(csv = "owls.csv", df = owls[, c("SiblingNegotiation", "FoodTreatment", "SexParent", "BroodSize", "logBroodSize", "Nest")],
              py = list(FoodTreatment = "C(FoodTreatment)", SexParent = "C(SexParent)")),
  sleepstudy = list(csv = "sleepstudy.csv", df = lme4::sleepstudy[, c("Reaction", "Days", "Subject")], py = list())
)
load_data <- function(key) {
  ds <- datasets[[key]]; df <- ds$df
  facs <- names(df)[vapply(df, is.factor, TRUE)]
  path <- file.path(dir, ds$csv)
  out <- df; for (v in facs) out[[v]] <- as.character(out[[v]])
  write.csv(out, path, row.names = FALSE)
  back <- read.csv(path, colClasses = setNames(rep("character", length(facs)), facs))
  for (v in facs) back[[v]] <- factor(back[[v]], levels = levels(df[[v]]))
  stopifnot(isTRUE(all.equal(back, df, check.attributes = FALSE)))
  list(df = back, csv = ds$csv, py = ds$py, levels = lapply(setNames(facs, facs), function(v) levels(df[[v]])))
}
py_names <- function(cn, d) {  # R's column names -> patsy's
  one <- function(p) {
    if (p %in% names(d$df) && !is.factor(d$df[[p]])) return(p)
    for (v in names(d$py)) {
      lev <- substring(p, nchar(v) + 1)
      if (startsWith(p, v) && lev %in% d$levels[[v]]) return(paste0(d$py[[v]], "[T.", lev, "]"))
    }
    stop("no patsy name for ", p)
  }
  as.list(setNames(vapply(cn, function(n) if (n == "(Intercept)") "Intercept" else
    paste(vapply(strsplit(n, ":")[[1]], one, ""), collapse = ":"), ""), cn))
}
collect <- function(expr) {
  w <- character(); msg <- character()
  val <- withCallingHandlers(expr, warning = function(c) { w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning") },
                             message = function(c) { msg <<- c(msg, conditionMessage(c)); invokeRestart("muffleMessage") })
  list(value = val, warnings = as.list(w), messages = as.list(msg))
}

# ---------------------------------------------------------------- independent log-likelihood
# log p(y | linear predictors) per row for glmmTMB's families (zi: P(structural zero) or, for the truncated
# (hurdle) families, P(y = 0); disp: glmmTMB's dispersion linear predictor)
logdens <- function(family, y, eta, pz, etad) {
  mu <- exp(eta)
  if (family %in% c("poisson", "truncated_poisson")) lf <- dpois(y, mu, log = TRUE)
  else if (family %in% c("nbinom2", "truncated_nbinom2")) lf <- dnbinom(y, size = exp(etad), mu = mu, log = TRUE)
  else if (family == "nbinom1") lf <- dnbinom(y, size = mu / exp(etad), mu = mu, log = TRUE)   # var mu (1 + phi)
  else if (family == "gaussian") return(dnorm(y, eta, exp(etad / 2), log = TRUE))               # sigma^2 = exp(etad)
  if (startsWith(family, "truncated")) {
    f0 <- if (family == "truncated_poisson") dpois(0, mu) else dnbinom(0, size = exp(etad), mu = mu)
    return(ifelse(y == 0, log(pz), log1p(-pz) + lf - log1p(-f0)))
  }
  ifelse(y == 0, log(pz + (1 - pz) * exp(lf)), log1p(-pz) + lf)
}
# per group: mode of f(b) = sum log p + log N(b; 0, s^2), curvature by numDeriv (Richardson); agrees with glmmTMB to ~1e-6; Laplace and 25-node AGQ
check_loglik <- function(tm, s, d) {
  fe <- fixef(tm); df <- d$df
  mf <- model.frame(lme4::nobars(as.formula(s$formula)), df); off <- model.offset(mf); if (is.null(off)) off <- 0
  eta <- num(getME(tm, "X") %*% fe$cond) + off
  pz <- if (length(fe$zi)) plogis(num(getME(tm, "Xzi") %*% fe$zi)) else rep(0, nrow(df))
  etad <- if (length(fe$disp)) num(model.matrix(as.formula(s$disp), df) %*% fe$disp) else rep(0, nrow(df))
  y <- model.response(mf); vc <- VarCorr(tm)$cond; g <- df[[names(vc)]]; sd <- num(attr(vc[[1]], "stddev"))
  gh <- statmod::gauss.quad(25, "hermite")
  lap <- agq <- 0; modes <- numeric()
  for (j in levels(g)) {
    i <- which(g == j)
    f <- function(b) sum(logdens(s$family, y[i], eta[i] + b, pz[i], etad[i])) + dnorm(b, 0, sd, log = TRUE)
    b <- optimize(f, c(-20, 20) * sd, maximum = TRUE, tol = 1e-12)$maximum
    for (k in 1:3) b <- b - numDeriv::grad(f, b) / numDeriv::hessian(f, b)[1, 1]   # polish the mode (Newton)
    d2 <- numDeriv::hessian(f, b)[1, 1]
    lap <- lap + f(b) + 0.5 * log(2 * pi) - 0.5 * log(-d2)
    sig <- 1 / sqrt(-d2); bk <- b + sqrt(2) * sig * gh$nodes
    vals <- vapply(bk, f, 0) + gh$nodes^2
    agq <- agq + log(sqrt(2) * sig) + max(vals) + log(sum(gh$weights * exp(vals - max(vals))))
    modes[j] <- b
  }
  re <- ranef(tm)$cond[[1]]
  list(laplace = lap, agq25 = agq, max_abs_diff_modes = max(abs(modes[rownames(re)] - re[, 1])))
}

# ---------------------------------------------------------------- fits
vc_terms <- function(vc) lapply(seq_along(vc), function(i) {
  v <- vc[[i]]; cr <- attr(v, "correlation"); dimnames(cr) <- NULL
  list(group = names(vc)[i], names = as.list(colnames(v)), variance = as.list(num(diag(as.matrix(v)))),
       sd = as.list(num(attr(v, "stddev"))), corr = cr)
})
fams <- list(poisson = poisson(), nbinom2 = nbinom2(), nbinom1 = nbinom1(), truncated_poisson = truncated_poisson(),
             truncated_nbinom2 = truncated_nbinom2(), gaussian = gaussian())
Z <- function(name, data, formula, zi, family, py, py_zi, disp = "~1", py_disp = "1", offset = NULL, note = NULL)
  list(name = name, data = data, formula = formula, zi = zi, family = family, py = py, py_zi = py_zi, disp = disp,
       py_disp = py_disp, offset = offset, note = note)
sp <- datasets$salamanders$py; SM <- paste0(sp$spp, " * ", sp$mined)
models <- list(
  Z("sal_zip_full", "salamanders", "count ~ spp * mined + (1 | site)", "~spp * mined", "poisson",
    paste0("count ~ ", SM, " + (1|site)"), SM),
  Z("sal_zip_zi1", "salamanders", "count ~ spp * mined + (1 | site)", "~1", "poisson", paste0("count ~ ", SM, " + (1|site)"), "1"),
  Z("sal_zinb2_full", "salamanders", "count ~ spp * mined + (1 | site)", "~spp * mined", "nbinom2",
    paste0("count ~ ", SM, " + (1|site)"), SM),
  Z("sal_zinb2_zi1", "salamanders", "count ~ spp * mined + (1 | site)", "~1", "nbinom2", paste0("count ~ ", SM, " + (1|site)"), "1"),
  Z("sal_zinb1_full", "salamanders", "count ~ spp * mined + (1 | site)", "~spp * mined", "nbinom1",
    paste0("count ~ ", SM, " + (1|site)"), SM),
  Z("sal_zinb1_zi1", "salamanders", "count ~ spp * mined + (1 | site)", "~1", "nbinom1", paste0("count ~ ", SM, " + (1|site)"), "1"),
  Z("sal_hurdle_pois", "salamanders", "count ~ spp * mined + (1 | site)", "~spp * mined", "truncated_poisson",
    paste0("count ~ ", SM, " + (1|site)"), SM),
  Z("sal_hurdle_nb2", "salamanders", "count ~ spp * mined + (1 | site)", "~spp * mined", "truncated_nbinom2",
    paste0("count ~ ", SM, " + (1|site)"), SM),
  Z("owls_zinb1", "owls", "SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize)) + (1 | Nest)", "~1", "nbinom1",
    "SiblingNegotiation ~ C(FoodTreatment) * C(SexParent) + (1|Nest)", "1", offset = "logBroodSize"),
  Z("owls_zinb2", "owls", "SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize)) + (1 | Nest)", "~1", "nbinom2",
    "SiblingNegotiation ~ C(FoodTreatment) * C(SexParent) + (1|Nest)", "1", offset = "logBroodSize"),
  # dispersion models: NB2 size theta_i = exp(disp linear predictor), no zero inflation; Gaussian sigma_i likewise
  Z("sal_nb2_disp", "salamanders", "count ~ spp * mined + (1 | site)", "~0", "nbinom2", paste0("count ~ ", SM, " + (1|site)"), "0",
    disp = "~spp", py_disp = sp$spp),
  Z("sleep_gauss_disp", "sleepstudy", "Reaction ~ Days + (1 | Subject)", "~0", "gaussian", "Reaction ~ Days + (1|Subject)", "0",
    disp = "~Days", py_disp = "Days")
)
names(models) <- vapply(models, `[[`, "", "name")

fit_one <- function(s) {
  cat(s$name, "\n")
  d <- load_data(s$data)
  t0 <- system.time(fit <- collect(glmmTMB(as.formula(s$formula), d$df, family = fams[[s$family]],
                                           ziformula = as.formula(s$zi), dispformula = as.formula(s$disp))))[["elapsed"]]
  tm <- fit$value; fe <- fixef(tm); v <- vcov(tm); ll <- logLik(tm)
  vf <- tryCatch(vcov(tm, full = TRUE), error = function(e) NULL)
  dv <- if (is.null(vf)) NULL else diag(vf); dv[dv < 0] <- NA
  sef <- if (is.null(vf)) NULL else setNames(sqrt(dv), rownames(vf))
  part <- function(prefix, x) if (length(x)) named(setNames(sef[paste0(prefix, names(x))], names(x))) else NULL
  Xd <- model.matrix(as.formula(s$disp), d$df)
  o <- list(
    data = d$csv, data_levels = d$levels, formula = s$formula, ziformula = s$zi, dispformula = s$disp,
    family = s$family, link = "log", zi_link = "logit",
    py_formula = s$py, py_ziformula = s$py_zi, py_dispformula = s$py_disp, offset = s$offset,
    fixef_py_names = list(cond = py_names(colnames(getME(tm, "X")), d),
                          zi = if (length(fe$zi)) py_names(colnames(getME(tm, "Xzi")), d) else NULL,
                          disp = if (length(fe$disp) && ncol(Xd)) py_names(colnames(Xd), d) else NULL),
    X_colsums = list(cond = named(colSums(getME(tm, "X"))),
                     zi = if (length(fe$zi)) named(colSums(getME(tm, "Xzi"))) else NULL,
                     disp = if (length(fe$disp) && ncol(Xd)) named(colSums(Xd)) else NULL),
    fixef = named(fe$cond), se = part("", fe$cond),
    fixef_zi = if (length(fe$zi)) named(fe$zi) else NULL, se_zi = part("zi~", fe$zi),
    fixef_disp = if (length(fe$disp)) named(fe$disp) else NULL, se_disp = part("d~", fe$disp),
    se_full = if (is.null(sef)) NULL else named(sef),
    varcorr = vc_terms(VarCorr(tm)$cond), sigma = sigma(tm),
    loglik = num(ll), loglik_objective = -tm$fit$objective, df = attr(ll, "df"), nobs = nobs(tm),
    AIC = AIC(tm), BIC = BIC(tm), pdHess = tm$sdr$pdHess, convergence = tm$fit$convergence,
    optimizer_message = tm$fit$message, warnings = fit$warnings, messages = fit$messages,
    ranef = list(group = names(ranef(tm)$cond), levels = as.list(rownames(ranef(tm)$cond[[1]])),
                 values = num(ranef(tm)$cond[[1]][, 1])),
    check = check_loglik(tm, s, d), time_seconds = t0)
  if (!is.null(s$note)) o$note <- s$note
  o
}

meta <- list(
  R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")), TMB = as.character(packageVersion("TMB")),
  notes = list(
    "All fits: glmmTMB defaults (Laplace, ML). Names are glmmTMB's (R's); fixef_py_names maps them to patsy's for py_formula / py_ziformula / py_dispformula.",
    "Families: link log for the counts; zi linear predictor on the logit scale. ZI: P(y) = pz 1[y = 0] + (1 - pz) f(y). Hurdle (truncated_*): P(0) = pz, P(y > 0) = (1 - pz) f(y) / (1 - f(0)).",
    "Dispersion (fixef_disp, log scale; sigma = exp of its intercept when dispformula is ~1): nbinom2 theta (variance mu + mu^2/theta), nbinom1 phi (variance mu (1 + phi)), gaussian: the residual VARIANCE (glmmTMB 1.1.5 models log sigma^2; sigma() gives its square root).",
    "loglik: logLik() (NA when the Hessian is not positive definite); loglik_objective = -fit$objective, the optimiser's value (always there).",
    "se / se_zi / se_disp from vcov(full = TRUE) (null where the Hessian gives no positive variance); se_full every parameter, glmmTMB's names ('theta_1|site.1' = log SD).",
    "check: this script's own Laplace log-likelihood at glmmTMB's estimates (mode per group by optimize + Newton, curvature by numDeriv's Richardson extrapolation), 25-node adaptive Gauss-Hermite value of the same integral, and the largest difference of its modes from ranef().",
    "offset: the column holding the offset already on the log scale (the R formula has offset(log(BroodSize))).",
    "time_seconds: elapsed fit time on a shared 2-core machine."
  ))

old <- if (length(args) && file.exists(json_file)) fromJSON(json_file, simplifyVector = FALSE) else list(models = list())
todo <- if (length(args)) args else names(models)
bad <- setdiff(todo, names(models)); if (length(bad)) stop("unknown model(s): ", paste(bad, collapse = ", "))
res <- old$models
for (n in todo) {
  res[[n]] <- fit_one(models[[n]])
  res <- res[intersect(c(names(models), names(res)), names(res))]
  writeLines(toJSON(list(meta = meta, models = res), auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"),
             json_file)
}
