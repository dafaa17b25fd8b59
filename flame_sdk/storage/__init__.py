"""Pure helpers of the storage client: serialization, final-result file planning, local DP, tags."""
