# AWS lifecycle targets (included by the top-level Makefile). Each one runs the boto3 CLI in
# sagemaker_lifecycle/, which reads its variables (ROLE_ARN, BUCKET_NAME, REGION, IMAGE_NAME, ARCH,
# ENDPOINT_NAME, IMAGE_TAG, INSTANCE_TYPE/INSTANCE_COUNT or SERVERLESS_MEMORY/SERVERLESS_CONCURRENCY,
# WAIT, FOLLOW, ...) from the command line and environment (make exports command-line variables) or
# from .deploy.env / DEPLOY_CONFIG. Defaults live in one place, sagemaker_lifecycle/config.py.

# Values reach the CLI through the environment, never spliced into a shell command line, so quotes,
# backticks or `$(...)` in a variable are data, not code.
LIFECYCLE := "$(PY)" -m sagemaker_lifecycle

.PHONY: push upload deploy status test invoke logs clean autoscale

push: ## Push IMAGE_NAME:IMAGE_TAG to ECR (repository created if missing; REGISTRY=host:port overrides)
	@$(LIFECYCLE) push

upload: export INDEX := $(INDEX)
upload: ## Pack INDEX (UPLOAD_LLM=1: and the LLM) into model.tar.gz and upload it to s3://BUCKET_NAME/
	@$(LIFECYCLE) upload

deploy: ## Create or update (in place) the SageMaker endpoint ENDPOINT_NAME for ARCH (split: ENDPOINT_NAME-llm first, then ENDPOINT_NAME)
	@$(LIFECYCLE) deploy

status: ## Print the endpoint status and autoscaling (WAIT=1: wait for InService/Failed, non-zero on Failed)
	@$(LIFECYCLE) status

autoscale: ## Autoscale the endpoint(s): MIN_CAPACITY, MAX_CAPACITY, TARGET_INVOCATIONS [SCALE_IN_COOLDOWN, SCALE_OUT_COOLDOWN; LLM_* for split]
	@$(LIFECYCLE) autoscale

# Q and URL have defaults in the top-level Makefile; they reach the CLI through the environment so
# that quotes in a question survive. `test` uses URL only when it was given (else the endpoint).
test invoke: export Q := $(Q)
invoke: export URL := $(URL)

test: ## Ask the deployed endpoint Q (URL=...: a local server) and print answer + sources
	@$(LIFECYCLE) test

invoke: ## Ask the local server at URL (default http://127.0.0.1:PORT) the question Q
	@$(LIFECYCLE) invoke

logs: ## Print recent CloudWatch logs of the endpoint (FOLLOW=1 tails, SINCE=minutes)
	@$(LIFECYCLE) logs

clean: ## Delete the alarms, autoscaling, endpoint(s), configs, models and dashboard (DELETE_S3=1, DELETE_ECR=1: also artifacts, repository)
	@$(LIFECYCLE) clean

# The dashboard and alarms read the same metric definitions (sagemaker_lifecycle/metrics.py); `clean` deletes
# both. dashboard-image needs no AWS: it draws the dashboard's JSON definition (matplotlib, a test dependency).
.PHONY: dashboard alarms dashboard-image

dashboard: ## Create or update the CloudWatch dashboard ENDPOINT_NAME: SageMaker's and the service's metrics (split: both endpoints)
	@$(LIFECYCLE) dashboard

alarms: ## Create or update the 5xx-rate, p99-latency, 429-rate and no-invocations alarms of each endpoint (ALARM_*; ALARM_TOPIC_ARN notifies)
	@$(LIFECYCLE) alarms

dashboard-image: ## Draw the dashboard's layout from its JSON definition into DASHBOARD_PNG (default docs/images/dashboard-ARCH.png)
	@"$(PY)" -m sagemaker_lifecycle.dashboard_image
