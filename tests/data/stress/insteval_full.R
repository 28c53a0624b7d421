# lme4 on the full InstEval (73,421 rows) for tests/test_stress_multiterm.py (slow): Rscript tests/data/stress/insteval_full.R
# from the repository root (~11 min; the test reads the same rows from benchmarks/data/insteval.csv.gz).
suppressMessages({library(lme4); library(jsonlite)})
d <- lme4::InstEval
out <- list()
t0 <- Sys.time()
m1 <- lmer(y ~ service + (1|s) + (1|d) + (1|dept), d, REML=TRUE)
out$reml3 <- list(loglik=as.numeric(logLik(m1)), se=sqrt(diag(as.matrix(vcov(m1)))), fixef=fixef(m1))
m2 <- lmer(y ~ service + (1|s) + (1|d) + (1|dept:service), d, REML=TRUE)
out$reml_ds <- list(loglik=as.numeric(logLik(m2)), se=sqrt(diag(as.matrix(vcov(m2)))), fixef=fixef(m2))
m3 <- lmer(y ~ service + (1|s) + (1|d) + (service|dept), d, REML=FALSE)
out$ml_slope <- list(loglik=as.numeric(logLik(m3)), se=sqrt(diag(as.matrix(vcov(m3)))), fixef=fixef(m3))
print(Sys.time() - t0)
writeLines(toJSON(out, digits=NA, auto_unbox=TRUE), "tests/data/stress/insteval_full_lme4.json")
