# Helpers shared by the R scripts that write the stored references (run from the repository root):
# the VarCorr of an lme4 / glmmTMB fit as a list per term, and an expression's value with its warnings
# and messages.
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
