# Big corpora (included by the top-level Makefile): index a corpus in parallel on SageMaker Processing,
# merge the shards into one model.tar.gz, and measure the index types (docs/large-corpora.md).
# index-job/index-merge read their variables like the other AWS targets (mk/aws.mk): DOCS_S3,
# INSTANCE_COUNT, INSTANCE_TYPE, SHARDS_S3, VOLUME_SIZE, STRICT, WAIT, plus ROLE_ARN, BUCKET_NAME, ...

.PHONY: index-job index-merge bench-index

index-job: ## Index DOCS_S3=s3://... on SageMaker Processing over INSTANCE_COUNT instances (WAIT=1 waits)
	@$(PY) -m sagemaker_lifecycle index-job

index-merge: ## Merge the newest index job's shards (or SHARDS_S3) into model.tar.gz at MODEL_DATA_URL (WAIT=1 waits)
	@$(PY) -m sagemaker_lifecycle index-merge

bench-index: ## Measure flat/hnsw/ivf on synthetic corpora of 10k, 100k, 1M chunks (BENCH_INDEX_SIZES=...; ~1 h)
	$(PY) -m bench.index.run --publish
