# Reference fits for tests/test_reference_multiterm_r2.py -> tests/data/multiterm_r2/reference.json
# Run from the repository root:  Rscript tests/data/multiterm_r2/reference.R
# Public data sets not used by the other reference files (nlme: Rail, ergoStool, Assay, Gun; datasets: ChickWeight,
# CO2, Loblolly, Orange, airquality, warpbreaks, InsectSprays, UCBAdmissions; MASS: petrol, Insurance; mlmRev:
# Contraception; ordinal: wine; HSAUR3: toenail; lme4: Arabidopsis), written to small CSVs here (factors as strings,
# numeric codes as numbers, NA kept), read back and fitted from the CSVs with lme4 (lmer / glmer / glmer.nb) and
# glmmTMB. The tests never need R.
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})
invisible(Sys.setlocale("LC_COLLATE", "C"))  # levels sorted as Python sorts strings (patsy's C(x) = R's contrasts)
dir <- "tests/data/multiterm_r2"
lopt <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
gopt <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
chr <- function(x) as.character(x)
int <- function(x) as.integer(as.character(x))
num <- function(x) unname(as.numeric(x))
named <- function(x) as.list(setNames(as.numeric(x), names(x)))

ucb <- as.data.frame(UCBAdmissions)
ucb <- reshape(ucb, idvar = c("Gender", "Dept"), timevar = "Admit", direction = "wide")
con <- mlmRev::Contraception; toe <- HSAUR3::toenail; wine <- ordinal::wine; ara <- lme4::Arabidopsis
ins <- MASS::Insurance; cw <- datasets::ChickWeight; co2 <- datasets::CO2; aq <- datasets::airquality
raw <- list(
  rail = data.frame(travel = nlme::Rail$travel, Rail = int(nlme::Rail$Rail)),
  ergo = data.frame(effort = nlme::ergoStool$effort, Type = chr(nlme::ergoStool$Type), Subject = int(nlme::ergoStool$Subject)),
  assay = data.frame(logDens = nlme::Assay$logDens, Block = int(nlme::Assay$Block), sample = chr(nlme::Assay$sample),
                     dilut = int(nlme::Assay$dilut)),
  gun = data.frame(rounds = nlme::Gun$rounds, Method = chr(nlme::Gun$Method), Team = chr(nlme::Gun$Team),
                   Physique = chr(nlme::Gun$Physique)),
  chick = data.frame(weight = cw$weight, Time = cw$Time, Chick = int(cw$Chick), Diet = int(cw$Diet)),
  co2 = data.frame(uptake = co2$uptake, conc = co2$conc, lconc = log(co2$conc), Plant = chr(co2$Plant), Type = chr(co2$Type),
                   Treatment = chr(co2$Treatment)),
  loblolly = data.frame(height = Loblolly$height, age = Loblolly$age, Seed = int(Loblolly$Seed)),
  orange = data.frame(big = Orange$circumference + 1e4, agesec = Orange$age * 86400, Tree = int(Orange$Tree),
                      circ = Orange$circumference, age = Orange$age),
  airquality = data.frame(Ozone = aq$Ozone, SolarR = aq$Solar.R, Temp = aq$Temp, Wind = aq$Wind, Month = aq$Month),
  petrol = data.frame(Y = MASS::petrol$Y, SG = MASS::petrol$SG, VP = MASS::petrol$VP, V10 = MASS::petrol$V10,
                      EP = MASS::petrol$EP, No = chr(MASS::petrol$No)),
  ucb = data.frame(Admitted = ucb$Freq.Admitted, Rejected = ucb$Freq.Rejected, Gender = chr(ucb$Gender), Dept = chr(ucb$Dept)),
  contraception = data.frame(use = as.integer(con$use == "Y"), age = con$age, urban = chr(con$urban), livch = chr(con$livch),
                             district = int(con$district)),
  wine = data.frame(high = as.integer(as.integer(wine$rating) >= 3), temp = chr(wine$temp), contact = chr(wine$contact),
                    judge = int(wine$judge), bottle = int(wine$bottle)),
  toenail = data.frame(y = as.integer(toe$outcome != "none or mild"), treatment = chr(toe$treatment), time = toe$time,
                       visit = toe$visit, patientID = int(toe$patientID)),
  insurance = data.frame(Claims = ins$Claims, lHolders = log(ins$Holders), District = int(ins$District),
                         Group = chr(ins$Group), Age = chr(ins$Age)),
  warpbreaks = data.frame(breaks = warpbreaks$breaks, wool = chr(warpbreaks$wool), tension = chr(warpbreaks$tension),
                          obs = seq_len(nrow(warpbreaks))),
  insects = data.frame(count = InsectSprays$count, spray = chr(InsectSprays$spray), obs = seq_len(nrow(InsectSprays))),
  arabidopsis = data.frame(fruits = ara$total.fruits, nutrient = ara$nutrient, amd = chr(ara$amd), rack = ara$rack,
                           status = chr(ara$status), reg = chr(ara$reg), popu = chr(ara$popu), gen = ara$gen,
                           obs = seq_len(nrow(ara)))
)
numeric_factors <- c("Rail", "Subject", "Block", "dilut", "Chick", "Diet", "Time", "Seed", "Tree", "Month", "district",
                     "judge", "bottle", "patientID", "visit", "District", "nutrient", "rack", "gen", "obs")
load_data <- function(key) {
  f <- file.path(dir, paste0(key, ".csv"))
  write.csv(raw[[key]], f, row.names = FALSE)
  d <- read.csv(f, stringsAsFactors = FALSE)
  for (v in names(d)) if (is.character(d[[v]])) d[[v]] <- factor(d[[v]], levels = sort(unique(d[[v]])))
  for (v in numeric_factors) if (v %in% names(d)) d[[paste0(v, "F")]] <- factor(d[[v]])
  d
}

M <- function(name, data, formula, family, reml = NULL, nagq = 1, link = NULL)
  list(name = name, data = data, formula = formula, family = family, reml = reml, nagq = nagq, link = link)
specs <- list(
  M("rail_reml", "rail", "travel ~ 1 + (1 | RailF)", "gaussian", TRUE),
  M("ergo_type_reml", "ergo", "effort ~ Type + (1 | SubjectF)", "gaussian", TRUE),
  M("ergo_crossed_ml", "ergo", "effort ~ 1 + (1 | SubjectF) + (1 | Type)", "gaussian", FALSE),
  M("assay_split_reml", "assay", "logDens ~ sample * dilutF + (1 | BlockF) + (1 | BlockF:sample) + (1 | BlockF:dilutF)", "gaussian", TRUE),
  M("assay_split_ml", "assay", "logDens ~ sample + dilutF + (1 | BlockF) + (1 | BlockF:sample) + (1 | BlockF:dilutF)", "gaussian", FALSE),
  M("gun_nested_ml", "gun", "rounds ~ Method + (1 | Physique/Team)", "gaussian", FALSE),
  M("chick_slope_reml", "chick", "weight ~ Time * DietF + (Time | ChickF)", "gaussian", TRUE),
  M("co2_slope_ml", "co2", "uptake ~ Type * Treatment + lconc + (lconc | Plant)", "gaussian", FALSE),
  M("co2_crossed_reml", "co2", "uptake ~ Type * Treatment + (1 | Plant) + (1 | conc)", "gaussian", TRUE),
  M("loblolly_diag_reml", "loblolly", "height ~ age + I(age^2) + (age || SeedF)", "gaussian", TRUE),
  M("orange_far_ml", "orange", "big ~ agesec + (1 | TreeF)", "gaussian", FALSE),
  M("orange_far_slope_reml", "orange", "big ~ agesec + (agesec || TreeF)", "gaussian", TRUE),
  # lme4 and glmmTMB fail on the far-scale slope model: the same model in days and mm (REML llf + log 86400)
  M("orange_days_slope_reml", "orange", "circ ~ age + (age || TreeF)", "gaussian", TRUE),
  M("airquality_na_reml", "airquality", "Ozone ~ SolarR + Temp + Wind + (1 | MonthF)", "gaussian", TRUE),
  M("petrol_ml", "petrol", "Y ~ SG + VP + V10 + EP + (1 | No)", "gaussian", FALSE),
  M("chick_gamma_crossed", "chick", "weight ~ Time + DietF + (1 | ChickF) + (1 | TimeF)", "gamma"),
  M("chick_gamma_diag", "chick", "weight ~ Time + DietF + (Time || ChickF)", "gamma"),
  M("airquality_gamma_na", "airquality", "Ozone ~ SolarR + Temp + Wind + (1 | MonthF)", "gamma"),
  M("ucb_trials", "ucb", "cbind(Admitted, Rejected) ~ Gender + (1 | Dept)", "binomial"),
  M("ucb_trials_slope", "ucb", "cbind(Admitted, Rejected) ~ Gender + (Gender | Dept)", "binomial"),
  M("ucb_trials_probit", "ucb", "cbind(Admitted, Rejected) ~ Gender + (1 | Dept)", "binomial", link = "probit"),
  M("contraception_slope", "contraception", "use ~ age + I(age^2) + urban + livch + (urban | districtF)", "binomial"),
  M("contraception_nagq0", "contraception", "use ~ age + I(age^2) + urban + livch + (1 | districtF)", "binomial", nagq = 0),
  M("contraception_agq9", "contraception", "use ~ age + I(age^2) + urban + livch + (1 | districtF)", "binomial", nagq = 9),
  M("ucb_trials_probit_agq7", "ucb", "cbind(Admitted, Rejected) ~ Gender + (1 | Dept)", "binomial", nagq = 7, link = "probit"),
  M("wine_crossed", "wine", "high ~ temp + contact + (1 | judgeF) + (1 | bottleF)", "binomial"),
  M("wine_crossed_cloglog", "wine", "high ~ temp + contact + (1 | judgeF) + (1 | bottleF)", "binomial", link = "cloglog"),
  M("toenail_crossed", "toenail", "y ~ treatment * time + (1 | patientIDF) + (1 | visitF)", "binomial"),
  M("insurance_offset_crossed", "insurance", "Claims ~ Age + offset(lHolders) + (1 | DistrictF) + (1 | Group)", "poisson"),
  M("insurance_nb2_offset", "insurance", "Claims ~ Age + offset(lHolders) + (1 | DistrictF) + (1 | Group)", "nbinom2"),
  M("warpbreaks_nested", "warpbreaks", "breaks ~ wool + (1 | tension/wool)", "poisson"),
  M("warpbreaks_olre", "warpbreaks", "breaks ~ wool * tension + (1 | obsF)", "poisson"),
  M("warpbreaks_nb2", "warpbreaks", "breaks ~ wool + (1 | tension)", "nbinom2"),
  M("insects_olre", "insects", "count ~ spray + (1 | obsF)", "poisson"),
  M("insects_olre_nagq0", "insects", "count ~ spray + (1 | obsF)", "poisson", nagq = 0),
  M("insects_olre_agq5", "insects", "count ~ spray + (1 | obsF)", "poisson", nagq = 5),
  M("arabidopsis_nb2", "arabidopsis", "fruits ~ nutrientF + amd + rackF + status + (1 | reg) + (1 | popu) + (1 | genF)", "nbinom2"),
  M("arabidopsis_olre_nagq0", "arabidopsis", "fruits ~ nutrientF + amd + rackF + status + (1 | popu) + (1 | genF) + (1 | obsF)", "poisson", nagq = 0),
  # slopes with crossed / nested terms, three terms, toenail's steep fits (Laplace poor under probit) and quadrature
  M("co2_slope_crossed_reml", "co2", "uptake ~ Type * Treatment + lconc + (lconc | Plant) + (1 | conc)", "gaussian", TRUE),
  M("chick_slope_crossed_ml", "chick", "weight ~ Time * DietF + (Time | ChickF) + (1 | TimeF)", "gaussian", FALSE),
  M("loblolly_corr_ml", "loblolly", "height ~ age + I(age^2) + (age | SeedF)", "gaussian", FALSE),
  M("orange_days_corr_reml", "orange", "circ ~ age + (age | TreeF)", "gaussian", TRUE),
  M("chick_gamma_slope", "chick", "weight ~ Time + DietF + (Time | ChickF)", "gamma"),
  M("airquality_gamma_slope", "airquality", "Ozone ~ SolarR + Temp + Wind + (Temp | MonthF)", "gamma"),
  M("contraception_nested", "contraception", "use ~ age + I(age^2) + urban + livch + (1 | districtF/urban)", "binomial"),
  M("wine_three", "wine", "high ~ temp + contact + (1 | judgeF) + (1 | bottleF) + (1 | judgeF:temp)", "binomial"),
  M("toenail_slope", "toenail", "y ~ treatment * time + (time | patientIDF)", "binomial"),
  M("toenail_probit", "toenail", "y ~ treatment * time + (1 | patientIDF)", "binomial", link = "probit"),
  M("toenail_agq9", "toenail", "y ~ treatment * time + (1 | patientIDF)", "binomial", nagq = 9),
  M("toenail_probit_agq9", "toenail", "y ~ treatment * time + (1 | patientIDF)", "binomial", nagq = 9, link = "probit"),
  M("insurance_three", "insurance", "Claims ~ Age + offset(lHolders) + (1 | DistrictF) + (1 | Group) + (1 | DistrictF:Group)", "poisson"),
  M("warpbreaks_nb2_nested", "warpbreaks", "breaks ~ wool + (1 | tension/wool)", "nbinom2"),
  M("arabidopsis_nb2_slope", "arabidopsis", "fruits ~ nutrientF + amd + rackF + status + (amd | popu) + (1 | genF)", "nbinom2")
)

source("tests/data/reference_helpers.R")  # covs_lme4, covs_tmb, capture
only <- commandArgs(trailingOnly = TRUE)
out <- list()
for (s in specs) {
  if (length(only) && !(s$name %in% only)) next
  d <- load_data(s$data); f <- as.formula(s$formula)
  link <- if (is.null(s$link)) (if (s$family == "gamma") "log" else "logit") else s$link
  fam <- list(poisson = poisson(), binomial = binomial(link = link), gamma = Gamma(link = "log"))
  if (s$family == "gaussian") {
    m <- tryCatch(capture(lmer(f, d, REML = s$reml, control = lopt)), error = function(e) list(error = conditionMessage(e)))
    tm <- tryCatch(capture(glmmTMB(f, d, REML = s$reml)), error = function(e) list(error = conditionMessage(e)))
  } else if (s$family == "nbinom2") {
    m <- capture(glmer.nb(f, d, control = gopt))
    tm <- tryCatch(capture(glmmTMB(f, d, family = nbinom2)), error = function(e) list(error = conditionMessage(e)))
  } else {
    m <- capture(glmer(f, d, family = fam[[s$family]], control = gopt, nAGQ = s$nagq))
    tm <- tryCatch(capture(glmmTMB(f, d, family = fam[[s$family]])), error = function(e) list(error = conditionMessage(e)))
  }
  mm <- m$value; tt <- tm$value
  tmb <- if (is.null(tt)) list(loglik = NULL, error = tm$error) else
    list(fixef = named(fixef(tt)$cond), se = named(sqrt(diag(vcov(tt)$cond))), loglik = num(logLik(tt)),
         sigma = sigma(tt), covs = covs_tmb(tt), pdHess = tt$sdr$pdHess, warnings = c(tm$warnings, tm$messages))
  o <- list(data = paste0(s$data, ".csv"), formula = s$formula, family = s$family, reml = s$reml, nagq = s$nagq,
            link = link, nobs = if (!is.null(mm)) nobs(mm) else if (!is.null(tt)) nobs(tt) else NULL,
            lme4 = if (is.null(mm)) list(loglik = NULL, error = m$error) else list(fixef = named(fixef(mm)), se = named(sqrt(diag(as.matrix(vcov(mm))))), loglik = num(logLik(mm)),
                        df = attr(logLik(mm), "df"), theta = num(getME(mm, "theta")), sigma = sigma(mm),
                        covs = covs_lme4(mm), singular = isSingular(mm),
                        warnings = c(m$warnings, m$messages, mm@optinfo$conv$lme4$messages)),
            glmmTMB = tmb)
  if (s$family == "nbinom2" && !is.null(mm)) o$lme4$nb_theta <- getME(mm, "glmer.nb.theta")
  cat(s$name, "lme4", if (is.null(mm)) m$error else o$lme4$loglik, "glmmTMB", if (is.null(tt)) tm$error else o$glmmTMB$loglik, "\n")
  out[[s$name]] <- o
}
meta <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")), glmmTMB = as.character(packageVersion("glmmTMB")),
             note = paste("lme4 se: vcov() (glmer.nb, Gamma and non-canonical links: expected curvature); glmmTMB se: vcov()$cond",
                          "from the full Hessian; glmer logLik is its PIRLS value; covs: VarCorr per term; glmmTMB sigma:",
                          "Gaussian residual SD, NB2 theta, Gamma 1/sqrt(shape)"))
writeLines(toJSON(list(meta = meta, models = out), auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
           file.path(dir, "reference.json"))
