"""A star analysis whose analysis_method raises KeyError on every data node."""

from flame.star import StarAggregator, StarAnalyzer, StarModel


class Analyzer(StarAnalyzer):
    def analysis_method(self, data, aggregator_results):
        return data[0]["missing"]


class Aggregator(StarAggregator):
    def aggregation_method(self, analysis_results):
        return sum(analysis_results)

    def has_converged(self, result, last_result):
        return True


if __name__ == "__main__":
    StarModel(Analyzer, Aggregator, "s3", query=["cohort.csv"], simple_analysis=True)
