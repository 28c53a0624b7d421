# Reference fits for tests/test_reference_multiterm_more.py -> tests/data/multiterm_more/reference.json
# Run from the repository root:  Rscript tests/data/multiterm_more/reference.R
# Public data sets from lme4, nlme, glmmTMB, MASS and R's datasets, written to small CSVs here (factors as
# strings, levels sorted so that patsy's C(x) gives R's treatment contrasts), read back and fitted from the CSVs.
# Per model: lme4 (lmer / glmer / glmer.nb) and glmmTMB: fixef, se, loglik, per-term covariance, sigma / NB theta.
# The tests never need R.
suppressMessages({library(lme4); library(glmmTMB); library(jsonlite)})
dir <- "tests/data/multiterm_more"
lopt <- lmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
gopt <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
chr <- function(x) as.character(x)
num <- function(x) unname(as.numeric(x))
named <- function(x) as.list(setNames(as.numeric(x), names(x)))

bw <- nlme::BodyWeight
sal <- glmmTMB::Salamanders; owl <- glmmTMB::Owls; bac <- MASS::bacteria; es <- datasets::esoph; ep <- MASS::epil
raw <- list(
  pastes = data.frame(strength = lme4::Pastes$strength, batch = chr(lme4::Pastes$batch), cask = chr(lme4::Pastes$cask)),
  cake = data.frame(angle = lme4::cake$angle, recipe = chr(lme4::cake$recipe), temperature = chr(lme4::cake$temperature),
                    replicate = as.integer(chr(lme4::cake$replicate))),
  machines = data.frame(score = nlme::Machines$score, Worker = as.integer(chr(nlme::Machines$Worker)), Machine = chr(nlme::Machines$Machine)),
  bodyweight = data.frame(weight = bw$weight, t = bw$Time / 10, Time = as.integer(bw$Time), Rat = as.integer(chr(bw$Rat)), Diet = chr(bw$Diet)),
  dyestuff2 = data.frame(Yield = lme4::Dyestuff2$Yield, Batch = chr(lme4::Dyestuff2$Batch)),
  salamanders = data.frame(count = sal$count, mined = chr(sal$mined), cover = sal$cover, site = chr(sal$site), spp = chr(sal$spp)),
  owls = data.frame(SiblingNegotiation = owl$SiblingNegotiation, FoodTreatment = chr(owl$FoodTreatment), SexParent = chr(owl$SexParent),
                    Nest = chr(owl$Nest), logBroodSize = owl$logBroodSize, arrival = round(owl$ArrivalTime - 24, 2)),
  pixel = data.frame(pixel = nlme::Pixel$pixel, day = nlme::Pixel$day, Dog = as.integer(chr(nlme::Pixel$Dog)), Side = chr(nlme::Pixel$Side)),
  orthodont = data.frame(distance = nlme::Orthodont$distance, age = nlme::Orthodont$age, Subject = chr(nlme::Orthodont$Subject),
                         Sex = chr(nlme::Orthodont$Sex)),
  bacteria = data.frame(y = as.integer(bac$y == "y"), trt = chr(bac$trt), week = bac$week, ID = chr(bac$ID)),
  esoph = data.frame(ncases = es$ncases, ncontrols = es$ncontrols, agegp = chr(es$agegp), alcgp = chr(es$alcgp), tobgp = chr(es$tobgp)),
  oxide = data.frame(Thickness = nlme::Oxide$Thickness, Source = as.integer(chr(nlme::Oxide$Source)), Lot = as.integer(chr(nlme::Oxide$Lot)),
                     Wafer = as.integer(chr(nlme::Oxide$Wafer))),
  epil = data.frame(y = ep$y, trt = chr(ep$trt), lbase = ep$lbase, lage = ep$lage, V4 = ep$V4, subject = ep$subject, period = ep$period,
                    ly = log(ep$y + 1), obs = seq_len(nrow(ep)), w = rep(c(1, 2, 0.5, 1.5), length.out = nrow(ep)))
)
load_data <- function(key) {
  f <- file.path(dir, paste0(key, ".csv"))
  write.csv(raw[[key]], f, row.names = FALSE)
  d <- read.csv(f, stringsAsFactors = FALSE)
  for (v in names(d)) if (is.character(d[[v]]) || v %in% c("temperature", "Diet", "Source"))  # numeric codes read back as numbers
    d[[v]] <- factor(d[[v]], levels = sort(unique(d[[v]])))
  for (v in c("Worker", "Rat", "replicate", "subject", "period", "Time", "week", "Source", "Lot", "Wafer", "obs", "Dog", "age")) if (v %in% names(d)) d[[paste0(v, "F")]] <- factor(d[[v]])
  d
}

M <- function(name, data, formula, family, reml = NULL, nagq = 1, link = NULL, weights = NULL)
  list(name = name, data = data, formula = formula, family = family, reml = reml, nagq = nagq, link = link, weights = weights)
specs <- list(
  M("pastes_nested_reml", "pastes", "strength ~ 1 + (1 | batch/cask)", "gaussian", TRUE),
  M("pastes_nested_ml", "pastes", "strength ~ 1 + (1 | batch/cask)", "gaussian", FALSE),
  M("pastes_crossed_reml", "pastes", "strength ~ 1 + (1 | batch) + (1 | cask)", "gaussian", TRUE),
  M("pastes_three_singular_reml", "pastes", "strength ~ 1 + (1 | batch) + (1 | cask) + (1 | batch:cask)", "gaussian", TRUE),
  M("cake_singular_crossed_ml", "cake", "angle ~ recipe + temperature + (1 | replicateF) + (1 | recipe)", "gaussian", FALSE),
  M("cake_nested_reml", "cake", "angle ~ recipe * temperature + (1 | recipe:replicateF)", "gaussian", TRUE),
  M("cake_crossed_reml", "cake", "angle ~ recipe * temperature + (1 | recipe:replicateF) + (1 | replicateF)", "gaussian", TRUE),
  M("cake_crossed_ml", "cake", "angle ~ recipe * temperature + (1 | recipe:replicateF) + (1 | replicateF)", "gaussian", FALSE),
  M("machines_nested_reml", "machines", "score ~ Machine + (1 | WorkerF/Machine)", "gaussian", TRUE),
  M("machines_nested_ml", "machines", "score ~ Machine + (1 | WorkerF/Machine)", "gaussian", FALSE),
  M("bw_slope_crossed_reml", "bodyweight", "weight ~ Diet * t + (t | RatF) + (1 | TimeF)", "gaussian", TRUE),
  M("bw_slope_crossed_ml", "bodyweight", "weight ~ Diet * t + (t | RatF) + (1 | TimeF)", "gaussian", FALSE),
  M("bw_diag_crossed_ml", "bodyweight", "weight ~ Diet * t + (t || RatF) + (1 | TimeF)", "gaussian", FALSE),
  M("bw_slope_interaction_ml", "bodyweight", "weight ~ Diet * t + (t | RatF) + (1 | Diet:TimeF)", "gaussian", FALSE),
  M("bw_rawtime_slope_ml", "bodyweight", "weight ~ Diet * Time + (Time | RatF) + (1 | TimeF)", "gaussian", FALSE),
  M("oxide_nested_reml", "oxide", "Thickness ~ Source + (1 | LotF/WaferF)", "gaussian", TRUE),
  M("oxide_three_level_ml", "oxide", "Thickness ~ 1 + (1 | SourceF/LotF/WaferF)", "gaussian", FALSE),
  M("bw_nested_slope_ml", "bodyweight", "weight ~ Diet * t + (t | Diet/RatF)", "gaussian", FALSE),
  M("pixel_nested_slope_reml", "pixel", "pixel ~ day + I(day^2) + (day | DogF) + (1 | Side:DogF)", "gaussian", TRUE),
  M("pixel_nested_slope_ml", "pixel", "pixel ~ day + I(day^2) + (day | DogF) + (1 | Side:DogF)", "gaussian", FALSE),
  M("orthodont_crossed_slope_ml", "orthodont", "distance ~ age * Sex + (age | Subject) + (1 | ageF)", "gaussian", FALSE),
  M("dyestuff2_singular_reml", "dyestuff2", "Yield ~ 1 + (1 | Batch)", "gaussian", TRUE),
  M("machines_slope3_reml", "machines", "score ~ Machine + (Machine | WorkerF)", "gaussian", TRUE),
  M("machines_split_ml", "machines", "score ~ Machine + (1 | WorkerF) + (0 + Machine | WorkerF)", "gaussian", FALSE),
  M("salamanders_poisson",  "salamanders", "count ~ mined + (1 | site) + (1 | spp)", "poisson"),
  M("salamanders_nb2", "salamanders", "count ~ mined + (1 | site) + (1 | spp)", "nbinom2"),
  M("salamanders_slope_poisson", "salamanders", "count ~ mined + cover + (cover | spp) + (1 | site)", "poisson"),
  M("salamanders_slope_nb2", "salamanders", "count ~ mined + cover + (cover | spp) + (1 | site)", "nbinom2"),
  M("owls_poisson_offset", "owls", "SiblingNegotiation ~ FoodTreatment + SexParent + offset(logBroodSize) + (1 | Nest/FoodTreatment)", "poisson"),
  M("owls_nb2_offset", "owls", "SiblingNegotiation ~ FoodTreatment + SexParent + offset(logBroodSize) + (1 | Nest/FoodTreatment)", "nbinom2"),
  M("owls_slope_poisson_offset", "owls", "SiblingNegotiation ~ FoodTreatment + arrival + offset(logBroodSize) + (arrival | Nest) + (1 | Nest:FoodTreatment)", "poisson"),
  M("bacteria_crossed", "bacteria", "y ~ trt + (1 | ID) + (1 | weekF)", "binomial"),
  M("esoph_trials_crossed", "esoph", "cbind(ncases, ncontrols) ~ agegp + (1 | alcgp) + (1 | tobgp)", "binomial"),
  M("bacteria_probit_crossed", "bacteria", "y ~ trt + (1 | ID) + (1 | weekF)", "binomial", link = "probit"),
  M("bacteria_cloglog_crossed", "bacteria", "y ~ trt + (1 | ID) + (1 | weekF)", "binomial", link = "cloglog"),
  M("bacteria_slope_crossed", "bacteria", "y ~ trt + week + (week | ID) + (1 | weekF)", "binomial"),
  M("bacteria_crossed_nagq0", "bacteria", "y ~ trt + (1 | ID) + (1 | weekF)", "binomial", nagq = 0),
  M("salamanders_poisson_nagq0", "salamanders", "count ~ mined + (1 | site) + (1 | spp)", "poisson", nagq = 0),
  M("epil_olre", "epil", "y ~ trt * lbase + lage + V4 + (1 | subjectF) + (1 | obsF)", "poisson"),
  M("epil_weighted_gaussian_reml", "epil", "ly ~ trt * lbase + lage + V4 + (1 | subjectF) + (1 | periodF)", "gaussian", TRUE, weights = "w"),
  M("epil_crossed", "epil", "y ~ trt * lbase + lage + V4 + (1 | subjectF) + (1 | periodF)", "poisson")
)

source("tests/data/reference_helpers.R")  # covs_lme4, covs_tmb, capture
out <- list()
for (s in specs) {
  d <- load_data(s$data); f <- as.formula(s$formula)
  fam <- list(poisson = poisson(), binomial = binomial(link = if (is.null(s$link)) "logit" else s$link))
  if (s$family == "gaussian") {
    d$.w <- if (is.null(s$weights)) rep(1, nrow(d)) else d[[s$weights]]
    m <- capture(lmer(f, d, REML = s$reml, control = lopt, weights = .w))
    tm <- tryCatch(capture(glmmTMB(f, d, REML = s$reml, weights = .w)), error = function(e) list(error = conditionMessage(e)))
  } else if (s$family == "nbinom2") {
    m <- capture(glmer.nb(f, d, control = gopt))
    tm <- capture(glmmTMB(f, d, family = nbinom2))
  } else {
    m <- capture(glmer(f, d, family = fam[[s$family]], control = gopt, nAGQ = s$nagq))
    tm <- capture(glmmTMB(f, d, family = fam[[s$family]]))  # (nagq = 0: glmmTMB's Laplace fit, for reference only)
  }
  mm <- m$value; tt <- tm$value
  tmb <- if (is.null(tt)) list(loglik = NULL, error = tm$error) else
    list(fixef = named(fixef(tt)$cond), se = named(sqrt(diag(vcov(tt)$cond))), loglik = num(logLik(tt)),
         sigma = sigma(tt), covs = covs_tmb(tt), pdHess = tt$sdr$pdHess, warnings = c(tm$warnings, tm$messages))
  o <- list(data = paste0(s$data, ".csv"), formula = s$formula, family = s$family, reml = s$reml, nagq = s$nagq,
            link = s$link, weights = s$weights,
            lme4 = list(fixef = named(fixef(mm)), se = named(sqrt(diag(as.matrix(vcov(mm))))), loglik = num(logLik(mm)), df = attr(logLik(mm), "df"),
                        theta = num(getME(mm, "theta")), sigma = sigma(mm), covs = covs_lme4(mm), singular = isSingular(mm),
                        warnings = c(m$warnings, m$messages, mm@optinfo$conv$lme4$messages)),
            glmmTMB = tmb)
  if (s$family == "nbinom2") o$lme4$nb_theta <- getME(mm, "glmer.nb.theta")
  cat(s$name, "lme4", o$lme4$loglik, "glmmTMB", if (is.null(tt)) tm$error else o$glmmTMB$loglik, "\n")
  out[[s$name]] <- o
}
meta <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")), glmmTMB = as.character(packageVersion("glmmTMB")),
             note = "lme4 se: vcov() (for glmer.nb and non-canonical links expected curvature); glmmTMB se: vcov()$cond from the full Hessian; glmer logLik is its PIRLS value; covs: VarCorr per term")
writeLines(toJSON(list(meta = meta, models = out), auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"), file.path(dir, "reference.json"))
