"""The StarModel example of PrivateAIM/python-sdk-patterns (``examples/run_star_model.py``), restated: each
data node counts its patients with ``Patient?_summary=count``, the aggregator submits the sum."""

from flame.star import StarAggregator, StarAnalyzer, StarModel


class PatientCounter(StarAnalyzer):
    def __init__(self, flame):
        super().__init__(flame)

    def analysis_method(self, data, aggregator_results):
        return float(data[0]["Patient?_summary=count"]["total"])


class CountSummer(StarAggregator):
    def __init__(self, flame):
        super().__init__(flame)

    def aggregation_method(self, analysis_results):
        return sum(analysis_results)

    def has_converged(self, result, last_result):
        return True


def main():
    StarModel(
        analyzer=PatientCounter,
        aggregator=CountSummer,
        data_type="fhir",
        query="Patient?_summary=count",
        simple_analysis=True,
        output_type="str",
        multiple_results=False,
        analyzer_kwargs=None,
        aggregator_kwargs=None,
    )


if __name__ == "__main__":
    main()
